"""The errors a command turns into one line on stderr and exit status 2."""


class UsageProblem(Exception):
    """Something wrong with the command line: exit status 2."""


class FileProblem(UsageProblem):
    """A file or folder the command line names that cannot be used (the model
    folder, -o, --resume's file, --annotate or --bboxdir): exit status 2; the
    message names it and says why."""
