"""The project's own exceptions; the CLI turns them into messages a person can act on."""


class MmluProError(Exception):
    """Base class: the message says what is wrong and what to do."""


class DatasetError(MmluProError):
    """A dataset file or row is missing, unreadable or malformed."""


class CacheError(MmluProError):
    """The user cache directory cannot be read or written."""


class HubError(MmluProError):
    """A download from the Hugging Face hub failed or is not possible offline."""


class MissingExtraError(MmluProError):
    """An optional dependency is needed for this operation."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package '{package}'. "
            f"Install it with: pip install 'mmlupro-local[{extra}]'"
        )


class Terminated(KeyboardInterrupt):
    """A signal that ends the run at once (SIGTERM, or a second Ctrl-C); `signum` says
    which, for the exit status."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
