"""The one error the plugin's commands raise for an expected failure: printed as
``error: <message>`` and turned into a non-zero exit status, never a traceback."""


class Failure(Exception):
    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
