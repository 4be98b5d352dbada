"""Code digests (bench/common/provenance.py): the code is part of a number's identity."""


def test_digest_follows_every_line(tmp_path):
    from bench.common.provenance import files_digest, train_digest
    from bench.methods import METHODS

    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    first = files_digest((str(f),))
    f.write_text("x = 2\n")
    files_digest.cache_clear()
    assert files_digest((str(f),)) != first
    assert train_digest(METHODS.get("ard")) != train_digest(METHODS.get("rslad"))  # the method's own file counts
