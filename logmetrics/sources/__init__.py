"""Sources: where lines come from. Each yields `batch.Batch`es and a checkpoint to save with them.

`file.FileFollower` follows files (a path or a glob) through rotation and truncation;
`journald.JournalFollower` follows a systemd unit through journalctl.
"""
