pytest_plugins = ["tests.testbed.fixtures"]

# CI runs every Hypothesis test with a fixed seed, so a run's result does not depend on luck;
# local runs keep exploring new examples (and find what CI then keeps checking).
import os  # noqa: E402

from hypothesis import settings as _hypothesis  # noqa: E402

_hypothesis.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis.load_profile("ci")
