"""Suite-wide test settings that keep results independent of the machine's speed."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Hypothesis's defaults measure wall-clock time: a 200 ms deadline per example and a "too slow"
# health check on data generation. On a shared CI machine at load average 20 both fail tests
# whose logic is fine, so neither applies here; the examples' count bounds each property test.
settings.register_profile(
    "libra", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("libra")
