"""A user reward, named by import path in the tests (``helpers.user_rewards:brevity``)."""


def brevity(samples):
    """Shorter rationales score higher."""
    return [-len(s.rationale) for s in samples]
