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


def test_changed_files_name_what_differs_from_the_commit(tmp_path, monkeypatch):
    """The files a record (and a report) lists beside a "-dirty" commit: modified, staged, renamed
    and deleted tracked files, not untracked ones; a clean tree has none."""
    import subprocess

    from bench.common import provenance

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "--allow-empty", "-m", "0")
    for name in ("a.py", "b.py", "c.py", "d.py"):
        (tmp_path / name).write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "1")
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    assert provenance.changed_files() == [] and not provenance.git_commit().endswith("-dirty")
    (tmp_path / "a.py").write_text("x = 2\n")                 # modified
    (tmp_path / "b.py").unlink()                              # deleted
    git("mv", "c.py", "e py.py")                              # renamed (a space in the name)
    (tmp_path / "d.py").write_text("x = 3\n")
    git("add", "d.py")                                        # staged
    (tmp_path / "new.py").write_text("")                      # untracked: not code that ran
    assert provenance.changed_files() == ["a.py", "b.py", "d.py", "e py.py"]
    assert provenance.git_commit().endswith("-dirty")
    for name in ("a.py", "d.py"):
        git("checkout", "HEAD", "--", name)
    git("rm", "-q", "--cached", "e py.py")
    (tmp_path / "e py.py").unlink()
    git("checkout", "HEAD", "--", "b.py", "c.py")
    assert provenance.changed_files() == []
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.md").write_text("1")
    git("add", "reports")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-q", "-m", "2")
    (tmp_path / "reports" / "r.md").write_text("2")           # a rebuilt report is output, not code
    assert provenance.changed_files() == [] and not provenance.git_commit().endswith("-dirty")
