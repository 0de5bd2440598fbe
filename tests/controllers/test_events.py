"""Events about an object: one per source, reason and message, counted when repeated."""

from __future__ import annotations

from skyshift_core.controllers.events import record_event
from skyshift_core.objects import Job


async def test_same_warning_from_two_sources_stays_two_events(async_client):
    job = Job.model_validate(await async_client.create({"kind": "Job", "metadata": {"name": "web"}, "spec": {"run": "x"}}))
    message = "image 'ubuntu:latest' was not used"

    await record_event(async_client, job, "Warning", "BackendWarning", message, "skylet/site-a")
    await record_event(async_client, job, "Warning", "BackendWarning", message, "skylet/site-b")
    await record_event(async_client, job, "Warning", "BackendWarning", message, "skylet/site-a")

    events = (await async_client.list("Event", "default"))["items"]
    counts = {event["source"]: event["count"] for event in events if event["reason"] == "BackendWarning"}
    assert counts == {"skylet/site-a": 2, "skylet/site-b": 1}
