"""The one exception type for bad user input; the CLIs turn it into exit status 2."""


class UserError(ValueError):
    """Input the user can fix (a typo, a missing file, an invalid document)."""
