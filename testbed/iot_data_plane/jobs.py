"""AWS IoT Jobs for the test bed: Greengrass V2 deployments reach devices as IoT jobs over MQTT.

Test equipment, in the local AWS endpoint's process. Rules from the AWS IoT Core developer guide
(``awsdocs/aws-iot-docs``; pages jobs-mqtt-api.md "Jobs device MQTT API operations",
jobs-comm-notifications.md "Jobs notifications", jobs-workflow-device-online.md) and the Greengrass V2
developer guide (manage-deployments.md: a deployment to a thing group is a continuous IoT job, and a new
revision for the same target replaces the previous one):

- A Greengrass V2 CreateDeployment creates an IoT job (the ID the deployment returns) whose document is the
  deployment (``job_document``); the target's previous deployment job is canceled, and its executions that
  had not ended become CANCELED. A job for a thing group is continuous: a thing in the group, also one added
  later, gets an execution (QUEUED) when it first asks for its jobs.
- The device publishes requests under ``$aws/things/<thing>/jobs/`` and the answer goes to that client only,
  subscribed or not (jobs-mqtt-api.md: "These response messages don't pass through the message broker"):
  ``get`` (pending executions: IN_PROGRESS, then QUEUED, each by queue time), ``$next/get`` and ``<jobId>/get``
  (one execution, with its job document), ``start-next`` (the next one, now IN_PROGRESS), ``<jobId>/update``
  (status, statusDetails, optional expectedVersion) answered on ``.../accepted`` or ``.../rejected`` with
  ``ResourceNotFound``, ``InvalidRequest``, ``InvalidStateTransition`` or ``VersionMismatch``. A terminal
  status (SUCCEEDED, FAILED, REJECTED, CANCELED, ...) never changes again.
- Notifications go through the broker to subscribers (iot:Receive applies): ``notify-next``
  (NextNotification) when the first pending execution of a thing changes, ``notify`` (ListNotification) when
  an execution is queued or ends.
- A device's SUCCEEDED / FAILED / REJECTED update of a deployment job becomes that deployment's status for the
  device in the Greengrass V2 emulation (``ListEffectiveDeploymentsForCoreDevice``), with the reason and error
  stack the nucleus puts in statusDetails (``deployment-failure-cause``, ``deployment-error-stack``,
  ``deployment-error-types``).

NOT emulated: jobs created through the IoT API by hand (only deployment jobs are served), rollout rates,
abort and timeout configurations (stored by the emulation, never executed), step timeouts
(``stepTimeoutInMinutes``), ``includeJobExecutionState``/``executionNumber`` options, job execution events
(``$aws/events/job...``), the 15-execution cap of list notifications, and the exact job document the
Greengrass service writes (here: the deployment as CreateDeployment received it, with its configuration ARN).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from testbed.iot_data_plane.registry import LOG

TERMINAL = ("SUCCEEDED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT", "REMOVED")
DEVICE_SETTABLE = ("IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED")
_REQUEST = re.compile(r"^\$aws/things/([^/]+)/jobs/(get|start-next|\$next/get|([^/]+)/get|([^/]+)/update)$")


@dataclass
class Outgoing:
    """A message the service sends: to the requesting client only, or through the broker to subscribers."""

    topic: str
    payload: dict
    to_publisher: bool


def _now() -> int:
    return int(time.time())


def _epoch(moment) -> int:
    return int(moment.timestamp())


class JobsService:
    """Executions live in moto's IoT backend (``job_executions``), so the control plane reads what devices did."""

    def __init__(self, registry, deployments):
        self.registry = registry
        # The Greengrass V2 emulation: deployment jobs and where device reports go.
        self.deployments = deployments

    # -- executions -------------------------------------------------------------------------------------

    def _pending(self, region: str, thing: str) -> list:
        """This thing's executions that have not ended, IN_PROGRESS first, each kind by queue time."""
        from moto.iot.models import FakeJobExecution

        backend = self.registry.backend(region)
        thing_arn = None
        for candidate in list(backend.things.values()):
            if candidate.thing_name == thing:
                thing_arn = candidate.arn
        if thing_arn is None:
            return []
        for job_id in self.deployments.deployment_jobs_for_thing(region, thing):
            job = backend.jobs.get(job_id)
            if job is None or job.status == "CANCELED" or (job_id, thing) in backend.job_executions:
                continue
            execution = FakeJobExecution(job_id, thing_arn, status="QUEUED")
            execution.version_number, execution.execution_number = 1, 1
            execution.started_at = None
            backend.job_executions[(job_id, thing)] = execution
        pending = [
            e
            for (job_id, name), e in list(backend.job_executions.items())
            if name == thing and e.status not in TERMINAL and backend.jobs.get(job_id) is not None
        ]
        return sorted(pending, key=lambda e: (e.status != "IN_PROGRESS", e.queued_at))

    @staticmethod
    def _summary(execution) -> dict:
        summary = {
            "jobId": execution.job_id,
            "queuedAt": _epoch(execution.queued_at),
            "lastUpdatedAt": _epoch(execution.last_updated_at),
            "versionNumber": execution.version_number,
            "executionNumber": execution.execution_number,
        }
        if execution.started_at is not None:
            summary["startedAt"] = _epoch(execution.started_at)
        return summary

    def _execution(self, region: str, thing: str, execution) -> dict:
        job = self.registry.backend(region).jobs[execution.job_id]
        full = self._summary(execution)
        full.update(
            thingName=thing,
            status=execution.status,
            statusDetails=dict(execution.status_details_map),
            jobDocument=json.loads(job.document),
        )
        return full

    def _notifications(self, region: str, thing: str, first_before: str | None) -> list[Outgoing]:
        pending = self._pending(region, thing)
        out = [
            Outgoing(
                "$aws/things/%s/jobs/notify" % thing,
                {
                    "timestamp": _now(),
                    "jobs": {
                        status: [self._summary(e) for e in pending if e.status == status]
                        for status in ("IN_PROGRESS", "QUEUED")
                        if any(e.status == status for e in pending)
                    },
                },
                to_publisher=False,
            )
        ]
        first = pending[0].job_id if pending else None
        if first != first_before:
            body = {"timestamp": _now()}
            if pending:
                body["execution"] = self._execution(region, thing, pending[0])
            out.append(Outgoing("$aws/things/%s/jobs/notify-next" % thing, body, to_publisher=False))
        return out

    def first_pending(self, region: str, thing: str) -> str | None:
        pending = self._pending(region, thing)
        return pending[0].job_id if pending else None

    def notify(self, region: str, thing: str, first_before: str | None) -> list[Outgoing]:
        """What the service publishes for a thing after its jobs changed (new deployment, job canceled)."""
        return self._notifications(region, thing, first_before)

    # -- the device's requests ----------------------------------------------------------------------------

    def on_publish(self, region: str, topic: str, payload: bytes) -> list[Outgoing]:
        match = _REQUEST.match(topic)
        if not match:
            return []
        thing = match.group(1)
        try:
            request = json.loads(payload or b"{}")
        except ValueError:
            request = None
        accepted, rejected = topic + "/accepted", topic + "/rejected"

        def reject(code: str, message: str, **extra) -> list[Outgoing]:
            body = {"code": code, "message": message, "timestamp": _now(), **extra}
            if isinstance(request, dict) and "clientToken" in request:
                body["clientToken"] = request["clientToken"]
            return [Outgoing(rejected, body, to_publisher=True)]

        def accept(body: dict) -> Outgoing:
            body["timestamp"] = _now()
            if "clientToken" in request:
                body["clientToken"] = request["clientToken"]
            return Outgoing(accepted, body, to_publisher=True)

        if not isinstance(request, dict):
            return reject("InvalidRequest", "The request payload is not a JSON object")
        with self.deployments.lock:
            first_before = self.first_pending(region, thing)
            pending = self._pending(region, thing)
            operation = match.group(2)
            if operation == "get":
                return [
                    accept(
                        {
                            "inProgressJobs": [self._summary(e) for e in pending if e.status == "IN_PROGRESS"],
                            "queuedJobs": [self._summary(e) for e in pending if e.status == "QUEUED"],
                        }
                    )
                ]
            if operation == "$next/get":
                return [accept({"execution": self._execution(region, thing, pending[0])} if pending else {})]
            if operation == "start-next":
                if not pending:
                    return [accept({})]
                execution = pending[0]
                if execution.status == "QUEUED":
                    self._set(region, thing, execution, "IN_PROGRESS", request.get("statusDetails"))
                return [accept({"execution": self._execution(region, thing, execution)})]
            job_id = match.group(3) or match.group(4)
            execution = self.registry.backend(region).job_executions.get((job_id, thing))
            if execution is None:
                return reject("ResourceNotFound", "No job execution %s for thing %s" % (job_id, thing))
            if match.group(3):
                return [accept({"execution": self._execution(region, thing, execution)})]
            return self._update(region, thing, execution, request, accept, reject, first_before)

    def _update(self, region, thing, execution, request, accept, reject, first_before) -> list[Outgoing]:
        status = request.get("status")
        if status not in DEVICE_SETTABLE:
            return reject("InvalidRequest", "status must be one of %s, got %r" % (", ".join(DEVICE_SETTABLE), status))
        details = request.get("statusDetails") or {}
        if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
            return reject("InvalidRequest", "statusDetails must be an object of string values")
        state = {"status": execution.status, "statusDetails": dict(execution.status_details_map),
                 "versionNumber": execution.version_number}  # fmt: skip
        if "expectedVersion" in request and str(request["expectedVersion"]) != str(execution.version_number):
            return reject("VersionMismatch", "expectedVersion %s is not %s" % (request["expectedVersion"],
                          execution.version_number), executionState=state)  # fmt: skip
        if execution.status in TERMINAL:
            return reject(
                "InvalidStateTransition",
                "Job execution %s is %s and cannot change" % (execution.job_id, execution.status),
                executionState=state,
            )
        self._set(region, thing, execution, status, details)
        body = {"executionState": {"status": execution.status, "statusDetails": dict(execution.status_details_map),
                                   "versionNumber": execution.version_number}}  # fmt: skip
        if request.get("includeJobDocument"):
            body["jobDocument"] = json.loads(self.registry.backend(region).jobs[execution.job_id].document)
        out = [accept(body)]
        if status in TERMINAL or first_before != self.first_pending(region, thing):
            out += self._notifications(region, thing, first_before)
        return out

    def _set(self, region: str, thing: str, execution, status: str, details) -> None:
        from moto.core.utils import utcnow

        execution.status = status
        if details:
            execution.status_details_map.update(details)
        execution.version_number += 1
        execution.last_updated_at = utcnow()
        if status == "IN_PROGRESS" and execution.started_at is None:
            execution.started_at = execution.last_updated_at
        LOG.info("job %s on %s: %s", execution.job_id, thing, status)
        self.deployments.on_job_execution(region, thing, execution.job_id, status, dict(execution.status_details_map))
