"""Teachers are typed (bench/config/schema.py's parse_teacher, bench/train/teacher.py's describe): a
RobustBench teacher is labelled and looked up by the method that really trained it."""
import json
from dataclasses import asdict

from bench.config.schema import (
    FileTeacher,
    TrainedTeacher,
    ZooTeacher,
    parse_teacher,
    teacher_from_dict,
)


def test_teacher_strings_are_parsed_once_into_types():
    from bench.train.teacher import describe

    zoo = parse_teacher("robustbench:Zhang2019Theoretically", TrainedTeacher())
    assert isinstance(zoo, ZooTeacher) and zoo.name == "Zhang2019Theoretically"
    info = describe(zoo, "cifar10")
    assert info.method == "trades" and info.reported["clean"] == 84.92 and info.reported["aa"] == 53.08
    assert describe(ZooTeacher("Chen2021LTD_WRN34_10"), "cifar100").reported["aa"] == 30.59
    f = parse_teacher("/some/t.pt", TrainedTeacher(), method="trades")
    assert isinstance(f, FileTeacher) and describe(f, "digits").method == "trades"
    assert parse_teacher(None, zoo) == zoo and parse_teacher("train", zoo) == TrainedTeacher()
    assert parse_teacher(None, TrainedTeacher(), epochs=3).train.epochs == 3
    for t in (zoo, f, TrainedTeacher(seed=None)):
        assert teacher_from_dict(json.loads(json.dumps(asdict(t)))) == t


def test_zoo_teacher_row_is_labelled_and_looked_up_by_its_real_method():
    from bench.report.aggregate import accuracy_columns, group_records, published_table
    from bench.records.record import RunRecord
    from bench.train.teacher import describe

    info = describe(ZooTeacher("Zhang2019Theoretically"), "cifar10")
    rec = RunRecord(run_id="t", role="teacher", method=info.method, method_name=info.method, options={}, note="",
                    dataset="cifar10", arch="wrn-34-10", teacher_id="robustbench-Zhang2019Theoretically", seed=0,
                    config={}, metrics={"clean": 0.85, "aa": 0.53}, curve={}, attack_settings={}, timings={},
                    teacher=asdict(info))
    groups = group_records([rec], [])
    assert list(groups) == ["teacher (trades, wrn-34-10; RobustBench Zhang2019Theoretically)"]
    table, _ = published_table(groups, accuracy_columns([rec]))
    assert table["Clean published"][0] == "84.92" and table["AutoAttack published"][0] == "53.08"
