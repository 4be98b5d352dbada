"""`python -m bench list | head`: a reader that stops early ends the command quietly, never in a traceback."""
import subprocess
import sys

SCRIPT = """
import sys
from bench.cli.main import main

class ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")
    def flush(self):
        pass
    def fileno(self):
        return 1

sys.stdout = ClosedPipe()
sys.exit(main(["list", "--recipes"]))
"""


def test_a_closed_pipe_ends_the_command_without_a_traceback():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr
