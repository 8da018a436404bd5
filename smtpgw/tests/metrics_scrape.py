"""Reading a Prometheus text exposition over HTTP, for tests that assert how counters moved."""

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Sample(dict):
    """Sample values by (name, sorted labels); ``value(name, **labels)`` sums the matches."""

    def value(self, name: str, **labels) -> float:
        total = 0.0
        for (sample_name, sample_labels), value in self.items():
            if sample_name != name:
                continue
            found = dict(sample_labels)
            if all(found.get(k) == str(v) for k, v in labels.items()):
                total += value
        return total

    def names(self) -> set[str]:
        return {name for name, _ in self}


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def scrape(url: str) -> Sample:
    status, body, _ = get(url)
    assert status == 200, body
    samples = Sample()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
