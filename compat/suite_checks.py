"""Checks shared by the Python compat suites: a failed check raises StepFailed, which the
suite's step runner reports; `SERVER BUG:` marks a gateway defect rather than a client quirk."""

import sys

from botocore.exceptions import ClientError


class StepFailed(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fail(msg):
    raise StepFailed(msg)


def server_bug(msg):
    """A check that fails because of a known gateway bug: reported, not worked around."""
    raise StepFailed("SERVER BUG: " + msg)


def expect_eq(what, expected, actual):
    if expected != actual:
        fail(f"{what}: expected {expected!r}, got {actual!r}")


def expect_true(what, cond, detail=""):
    if not cond:
        fail(f"{what}{': ' + detail if detail else ''}")


def expect_client_error(what, code, status, fn, *args, **kwargs):
    """Calls fn, which must raise ClientError with this error code and HTTP status."""
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        got_code = e.response.get("Error", {}).get("Code")
        got_status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if (got_code, got_status) != (code, status):
            fail(f"{what}: expected {code} ({status}), got {got_code} ({got_status}): {e}")
        log(f"  {what}: {code} ({status}) as expected")
        return e
    fail(f"{what}: expected error {code} ({status}), but the call succeeded")
