"""The exit statuses of every `mtcnn` command, defined once (docs/exit-codes.md).

    0    everything asked for was done
    1    the run went ahead, but some images were skipped (their records
         carry the reason) or an output failed while being written; compare:
         the sets differ
    2    nothing was done: a bad option or argument, a file or folder that
         cannot be used
    130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM (128 + the signal)
    141  stdout was closed by its reader (`| head`): no message
"""
OK = 0
SKIPPED = 1  # some images skipped, an output not written; compare: differences
USAGE = 2
PIPE_CLOSED = 141  # 128 + SIGPIPE


def interrupted(signum: int) -> int:
    """The shell's status for a stop by signal `signum` (130, 143)."""
    return 128 + signum
