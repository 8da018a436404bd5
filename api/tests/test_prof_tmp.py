import cProfile, pstats, json, time
import pytest
from django.test import Client
from bench.send_api import batch_body

@pytest.mark.django_db
def test_prof(server):
    api = Client(HTTP_X_POSTMARK_SERVER_TOKEN=server.tokens.first().token)
    body = batch_body(500, 2048)
    api.post("/email/batch", data=batch_body(10, 2048), content_type="application/json")
    for _ in range(2):
        t = time.monotonic()
        r = api.post("/email/batch", data=body, content_type="application/json")
        print("seconds", time.monotonic() - t)
    pr = cProfile.Profile()
    pr.enable()
    r = api.post("/email/batch", data=body, content_type="application/json")
    pr.disable()
    assert r.status_code == 200
    pstats.Stats(pr).sort_stats("tottime").print_stats(30)
    pstats.Stats(pr).sort_stats("cumulative").print_stats(40)
