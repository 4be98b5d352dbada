"""A bench student as a RobustBench submission: its leaderboard rows and its weights.

A row is a :class:`LeaderboardEntry` (typed: accuracies as fractions, eps as a number); it becomes
RobustBench's ``model_info`` JSON (the field order of robustbench's ``ModelInfo``, accuracies as percent
strings, eps as ``"8/255"``) only when written. A run evaluated under AutoAttack gets a row on its L-p
leaderboard; a run evaluated under common corruptions gets one on the ``corruptions`` leaderboard too
(``corruptions_acc``: the mean over every corruption and severity, as robustbench.eval computes it), with
its per-(corruption, severity) accuracies as one row of RobustBench's ``unaggregated_results.csv``. Layout,
mirroring the RobustBench repository and its default ``./models`` model folder::

    <out_dir>/model_info/<dataset>/<threat_model>/<name>.json
    <out_dir>/model_info/<dataset>/corruptions/<name>.unaggregated.csv   # a run with corruptions
    <out_dir>/models/<dataset>/<threat_model>/<name>.pt      # {"state_dict": ...}

so RobustBench's ``load_model(name, model_dir=<out_dir>/models)`` loads the weights once the
architecture is in its zoo, and :func:`bench.common.io.load_weights` loads them into a bench model.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.common.errors import BenchError
from bench.common.io import atomic_save, atomic_write_text
from bench.models import leaderboard_name

ROBUSTBENCH_DATASETS = ("cifar10", "cifar100", "imagenet")
THREAT_MODELS = ("Linf", "L2", "corruptions")
CORRUPTIONS = "corruptions"
# Test-set sizes RobustBench evaluates on (ImageNet: its fixed 5,000-image subset).
FULL_TEST_SIZE = {"cifar10": 10000, "cifar100": 10000, "imagenet": 5000}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def format_eps(eps: float) -> str:
    """``"8/255"`` when eps is k/255 for an integer k, else the decimal (``"0.031"``, ``"0.5"``)."""
    k = eps * 255
    if abs(k - round(k)) < 1e-6 and round(k) > 0:
        return f"{round(k)}/255"
    return f"{eps:.6g}"


def _percent(fraction: float | None) -> str:
    return "" if fraction is None else f"{100 * fraction:.2f}"


def _is_fraction(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
            and 0 <= value <= 1)


@dataclass(frozen=True)
class LeaderboardEntry:
    """One row of a RobustBench leaderboard (``model_info/<dataset>/<threat_model>/<name>.json``).

    Accuracies are fractions in [0, 1]; ``threat_model`` is the JSON's folder, not one of its fields.
    bench leaves the paper fields (link, name, authors, venue, reported) empty. An L-p row has an eps and
    ``autoattack_acc``; a ``corruptions`` row has neither (eps None, as RobustBench's) and ``corruptions_acc``.
    ``corruptions_mce`` (relative to AlexNet's errors in RobustBench's unaggregated_results.csv, which
    bench does not ship) stays empty unless given."""
    dataset: str
    threat_model: str
    eps: float | None
    architecture: str                 # the leaderboards' name, e.g. "ResNet-18"
    autoattack_acc: float | None
    clean_acc: float | None = None
    footnote: str = ""
    additional_data: bool = False     # bench trains on the dataset's training split only
    number_forward_passes: int = 1
    link: str = ""
    name: str = ""                    # the paper's title
    authors: str = ""
    venue: str = ""
    reported: float | None = None     # the robust accuracy the paper reports
    corruptions_acc: float | None = None
    corruptions_mce: float | None = None

    def __post_init__(self):
        if self.dataset not in ROBUSTBENCH_DATASETS:
            raise BenchError(f"RobustBench has leaderboards for {', '.join(ROBUSTBENCH_DATASETS)} only, "
                             f"not {self.dataset!r}")
        if self.threat_model not in THREAT_MODELS:
            raise BenchError(f"{self.threat_model!r} is not a RobustBench threat model ({', '.join(THREAT_MODELS)})")
        corruptions = self.threat_model == CORRUPTIONS
        if corruptions and self.eps is not None:
            raise BenchError("a RobustBench corruptions entry has no eps")
        if not corruptions and (isinstance(self.eps, bool) or not isinstance(self.eps, (int, float))
                                or not self.eps > 0):
            raise BenchError(f"RobustBench entry eps {self.eps!r} is not a positive number")
        needed = "corruptions_acc" if corruptions else "autoattack_acc"
        for what in ("autoattack_acc", "clean_acc", "reported", "corruptions_acc"):
            value = getattr(self, what)
            if (value is not None or what == needed) and not _is_fraction(value):
                raise BenchError(f"RobustBench entry {what} {value!r} is not a fraction in [0, 1]")
        mce = self.corruptions_mce
        if mce is not None and (isinstance(mce, bool) or not isinstance(mce, (int, float)) or not 0 <= mce < math.inf):
            raise BenchError(f"RobustBench entry corruptions_mce {mce!r} is not a non-negative ratio")

    def model_info(self) -> dict[str, Any]:
        """The entry as RobustBench's model_info JSON object, in the field order of its ModelInfo (the
        fields of its leaderboard: an L-p row's ``autoattack_acc`` or a corruptions row's two)."""
        head = {"link": self.link, "name": self.name, "authors": self.authors,
                "additional_data": self.additional_data, "number_forward_passes": self.number_forward_passes,
                "dataset": self.dataset, "venue": self.venue, "architecture": self.architecture,
                "eps": None if self.eps is None else format_eps(float(self.eps)),
                "clean_acc": _percent(self.clean_acc), "reported": _percent(self.reported)}
        if self.threat_model == CORRUPTIONS:
            scores = {"corruptions_acc": _percent(self.corruptions_acc),
                      "corruptions_mce": _percent(self.corruptions_mce)}
        else:
            scores = {"autoattack_acc": _percent(self.autoattack_acc)}
        return head | scores | {"footnote": self.footnote}


def leaderboard_entry(record: Any) -> LeaderboardEntry:
    """A bench run record (a dict or a RunRecord) as a leaderboard row; the footnote says the method,
    teacher and AutoAttack settings (and when AutoAttack or the clean accuracy used fewer than the full
    test set). Refuses a record without an AutoAttack accuracy."""
    record = _as_dict(record)
    metrics = record.get("metrics") or {}
    if metrics.get("aa") is None:
        raise BenchError(f"run {record.get('run_id', '?')} has no AutoAttack accuracy (metrics['aa']); "
                         f"RobustBench entries need one: evaluate with the 'aa' attack first")
    config = record.get("config") or {}
    aa_settings = (record.get("attack_settings") or {}).get("aa") or {}
    eps = aa_settings.get("eps", (config.get("eval") or {}).get("eps"))
    if eps is None:
        raise BenchError("the run record gives no AutoAttack eps")
    arch = config.get("student_arch") if record.get("role", "student") == "student" else None
    entry = LeaderboardEntry(
        dataset=(config.get("data") or {}).get("name") or record.get("dataset") or "",
        threat_model=aa_settings.get("norm") or "Linf", eps=eps,
        architecture=leaderboard_name(arch or record.get("arch") or ""),
        autoattack_acc=metrics["aa"], clean_acc=metrics.get("clean"))
    return dataclasses.replace(entry, footnote=_footnote(record, entry))


def _footnote(record: dict, entry: LeaderboardEntry) -> str:
    config = record.get("config") or {}
    aa_settings = (record.get("attack_settings") or {}).get("aa") or {}
    full = FULL_TEST_SIZE[entry.dataset]
    n_aa = aa_settings.get("n")
    version = aa_settings.get("version", "standard")
    notes = _run_note(record)
    where = f"{n_aa} of the {full}" if n_aa is not None else f"an unrecorded number of the {full}"
    notes.append(f"AutoAttack (pyautoattack, version {version}, {entry.threat_model}, "
                 f"eps {format_eps(float(entry.eps))}) on {where} test images.")
    if n_aa is not None and n_aa < full:
        notes.append(f"AutoAttack ran on fewer than the full test set (the first {n_aa} images only).")
    if version != "standard":
        notes.append(f"AutoAttack version {version!r}, not 'standard'.")
    if (config.get("eval") or {}).get("aa_attacks"):
        notes.append(f"Only AutoAttack's {', '.join(aa_settings.get('attacks', []))} ran (eval.aa_attacks), "
                     f"not its whole version.")
    n_clean = (config.get("eval") or {}).get("n")
    if entry.clean_acc is not None and n_clean is not None and n_clean < full:
        notes.append(f"Clean accuracy on the first {n_clean} of the {full} test images.")
    return " ".join(notes)


def corruption_entry(record: Any) -> LeaderboardEntry:
    """A bench run record evaluated under common corruptions as a row of RobustBench's ``corruptions``
    leaderboard; the footnote says on how many images, which corruptions and where the images came from
    (bench's own generation is not the published CIFAR-10-C). Refuses a record without them."""
    record = _as_dict(record)
    metrics = record.get("metrics") or {}
    if metrics.get(CORRUPTIONS) is None:
        raise BenchError(f"run {record.get('run_id', '?')} has no corruption accuracy (metrics['corruptions']); "
                         f"evaluate with the 'corruptions' attack first")
    config = record.get("config") or {}
    arch = config.get("student_arch") if record.get("role", "student") == "student" else None
    entry = LeaderboardEntry(
        dataset=(config.get("data") or {}).get("name") or record.get("dataset") or "", threat_model=CORRUPTIONS,
        eps=None, architecture=leaderboard_name(arch or record.get("arch") or ""), autoattack_acc=None,
        clean_acc=metrics.get("clean"), corruptions_acc=metrics[CORRUPTIONS])
    return dataclasses.replace(entry, footnote=_corruption_footnote(record, entry))


def _as_dict(record: Any) -> dict:
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    return record


def _run_note(record: dict) -> list[str]:
    method = record.get("method") or record.get("method_name")
    if not method:
        return []
    teacher = record.get("teacher_id")
    return [f"bench run {record.get('run_id', '')}: {method}" + (f" distilled from teacher {teacher}" if teacher
                                                                 else "") + "."]


def _corruption_footnote(record: dict, entry: LeaderboardEntry) -> str:
    how = (record.get("attack_settings") or {}).get(CORRUPTIONS) or {}
    full, n = FULL_TEST_SIZE[entry.dataset], how.get("n")
    names, severities = how.get("corruptions") or [], how.get("severities") or []
    notes = _run_note(record)
    notes.append(f"Mean accuracy over {len(names)} corruptions at severities {', '.join(map(str, severities))} on "
                 + (f"the first {n} of the {full}" if n is not None else f"an unrecorded number of the {full}")
                 + " test images.")
    source = how.get("source") or "an unrecorded source"
    if source.startswith("published"):
        notes.append(f"Images from the {source}.")
    else:
        notes.append(f"Images {source}, seed {how.get('seed')}: not the published {entry.dataset.upper()}-C "
                     f"files, so not comparable with the leaderboard's numbers.")
    if n is not None and n < full:
        notes.append("Fewer than the full test set.")
    if len(names) < 15:
        notes.append(f"Only {', '.join(names)} ({how.get('chosen', '')}).")
    if entry.corruptions_mce is None:
        notes.append("corruptions_mce left empty: it needs AlexNet's accuracies from RobustBench's "
                     "unaggregated_results.csv.")
    return " ".join(notes)


def unaggregated_csv(record: Any, name: str) -> str:
    """The record's accuracy per (corruption, severity) as one row of RobustBench's unaggregated_results.csv
    (a two-level header, fractions; robustbench.eval reads it with ``header=[0, 1], index_col=0``)."""
    import pandas as pd

    per = ((_as_dict(record).get("corruptions") or {}).get("accuracy")) or {}
    row = {(corruption, severity): acc for corruption, accs in per.items()
           for severity, acc in enumerate(accs, start=1)}
    return pd.DataFrame(row, index=[name]).to_csv()


def _write(entry: LeaderboardEntry, weights: dict, out_dir: Path, name: str) -> tuple[Path, Path]:
    json_path = out_dir / "model_info" / entry.dataset / entry.threat_model / f"{name}.json"
    ckpt_path = out_dir / "models" / entry.dataset / entry.threat_model / f"{name}.pt"
    atomic_save({"state_dict": weights}, ckpt_path)
    atomic_write_text(json_path, json.dumps(entry.model_info(), indent=2) + "\n")
    return json_path, ckpt_path


def _checked(state_dict: dict, name: str) -> dict:
    if not _NAME.match(name or ""):
        raise BenchError(f"RobustBench model name {name!r} must be letters, digits, '_', '-' or '.'")
    if not isinstance(state_dict, dict) or not state_dict \
            or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise BenchError("the weights to export are not a non-empty state_dict of tensors")
    return {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}


def export_robustbench(record: Any, state_dict: dict, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Write a bench run as a RobustBench L-p submission named ``name``; returns (json_path, checkpoint_path)."""
    weights = _checked(state_dict, name)
    return _write(leaderboard_entry(record), weights, Path(out_dir), name)


def export_corruptions(record: Any, state_dict: dict, out_dir: Path, name: str) -> tuple[Path, Path, Path]:
    """Write a bench run as a RobustBench corruptions submission named ``name``; returns (json_path,
    checkpoint_path, unaggregated_csv_path)."""
    weights = _checked(state_dict, name)
    entry = corruption_entry(record)
    json_path, ckpt_path = _write(entry, weights, Path(out_dir), name)
    csv_path = json_path.with_name(f"{name}.unaggregated.csv")
    atomic_write_text(csv_path, unaggregated_csv(record, name))
    return json_path, ckpt_path, csv_path


def export_submissions(record: Any, state_dict: dict, out_dir: Path, name: str) -> list[Path]:
    """Every RobustBench submission the record has a number for (AutoAttack: its L-p leaderboard; common
    corruptions: the corruptions leaderboard); the files written. Refuses a record with neither."""
    metrics = _as_dict(record).get("metrics") or {}
    if metrics.get("aa") is None and metrics.get(CORRUPTIONS) is None:
        leaderboard_entry(record)  # its message: evaluate with 'aa' first
    written: list[Path] = []
    if metrics.get("aa") is not None:
        written += export_robustbench(record, state_dict, out_dir, name)
    if metrics.get(CORRUPTIONS) is not None:
        written += export_corruptions(record, state_dict, out_dir, name)
    return written
