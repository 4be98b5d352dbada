"""``bench site``: run-sets as a static leaderboard website (``data`` builds what it shows, ``build``
writes the files)."""
