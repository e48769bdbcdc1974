"""Bedrock batch inference on the embedded AWS: CreateModelInvocationJob and GetModelInvocationJob.

moto 5.2.1 has no batch inference, so every ``bedrock`` client answers these two operations
here (a botocore handler on the generic ``before-call`` event, registered last: the IAM
enforcer's, registered first on the same event, authorises the call before it is answered). What it models, from the Amazon Bedrock User Guide and API Reference:

* a job reads every ``.jsonl`` file at ``inputDataConfig.s3InputDataConfig.s3Uri`` (a file or a
  folder) and writes one ``<file>.out`` per input file under ``<output s3Uri>/<job id>/``, each
  line ``{"recordId", "modelInput", "modelOutput"}`` or with ``error`` instead of ``modelOutput``
  ("Format and upload your batch inference data", "View the results of a batch inference job");
* it reads and writes S3 *as its service role* (``roleArn``, "Create a service role for batch
  inference"): a role that can't read the input or write the output fails the job (status
  Failed, the reason in ``message``), as Bedrock's validation does;
* status moves Submitted -> InProgress -> Completed in nominal time on the runtime's clock
  (``submitted_seconds``, then ``seconds_per_record`` per record, at least ``min_in_progress_seconds``);
  the records are answered when a GetModelInvocationJob first sees the job's end time pass;
* ``modelInvocationType`` ``Converse`` only: each ``modelInput`` is a Converse request, answered
  by the local provider (``local.*`` model ids); a record the model can't answer gets an ``error``
  line (errorCode 400) in the output and the job still completes (PartiallyCompleted is for
  records not processed in time, which a local job never leaves).
* ``clientRequestToken``: the same token returns the same job (idempotency).
* the job's service role must trust ``bedrock.amazonaws.com`` for this job: its trust policy
  is read at CreateModelInvocationJob, and conditions on ``aws:SourceAccount`` and
  ``aws:SourceArn`` (the job's ARN) are evaluated ("Create a custom service role for batch
  inference", https://docs.aws.amazon.com/bedrock/latest/userguide/batch-iam-sr.html); a role
  Bedrock could not assume is a ValidationException;
* fewer records than ``min_records`` ("Minimum number of records per batch inference job", a
  per-model quota, "Format and upload your batch inference data") fails the job at validation
  (status Failed, the reason in ``message``);
* ``inject`` makes the next job end Failed / Stopped / Expired with a message, answer some
  records with error lines (``error_records`` with ``error_code``), or leave some unanswered and
  end PartiallyCompleted (``unanswered``): the faults the pipeline must fail cleanly on.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelgate.errors import ModelgateError
from modelgate.manifest import InferenceParameters
from modelgate.providers import LocalProvider
from modelgate_emulator import iam
from modelgate_emulator.clock import Clock

_PARAMS_KEY = "modelgate_bedrock_batch_params"
OPERATIONS = ("CreateModelInvocationJob", "GetModelInvocationJob")


@dataclass
class _Job:
    arn: str
    job_id: str
    name: str
    model_id: str
    role_arn: str
    input_uri: str
    output_uri: str
    invocation_type: str
    token: str | None
    submitted_at: float
    status: str = "Submitted"
    message: str | None = None
    ends_at: float | None = None
    ended_at: float | None = None
    records: int = 0
    fault: JobFault | None = None


@dataclass(frozen=True)
class JobFault:
    """What the next created job does wrong (``BatchInference.inject``)."""

    status: str | None = None  # Failed, Stopped or Expired: the job ends so, with ``message``
    message: str = "injected failure"
    error_records: int = 0  # the first N records get error lines with ``error_code``
    error_code: int = 500
    unanswered: int = 0  # the last N records get no output line; the job ends PartiallyCompleted


class BatchValidation(ModelgateError):
    """A CreateModelInvocationJob request Bedrock would refuse (ValidationException)."""


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise BatchValidation(f"{uri[:200]!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


class BatchInference:
    """The jobs of one embedded AWS (see the module doc)."""

    def __init__(
        self,
        *,
        clock: Clock,
        region: str,
        account_id: str,
        submitted_seconds: float = 60.0,
        seconds_per_record: float = 0.5,
        min_in_progress_seconds: float = 60.0,
        min_records: int = 100,
        provider: LocalProvider | None = None,
    ) -> None:
        self.clock, self.region, self.account_id = clock, region, account_id
        self.submitted_seconds = submitted_seconds
        self.seconds_per_record = seconds_per_record
        self.min_in_progress_seconds = min_in_progress_seconds
        self.min_records = min_records
        self._faults: list[JobFault] = []
        self.provider = provider or LocalProvider(base_ms=0, per_output_token_ms=0)
        self._jobs: dict[str, _Job] = {}
        self._pending: dict[str, list[tuple[str, list[str]]]] = {}  # job ARN -> its input, read at InProgress
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- wiring
    @contextlib.contextmanager
    def installed(self) -> Iterator[BatchInference]:
        """Answer the two operations on every bedrock client created while installed."""
        from unittest import mock

        from botocore.session import Session

        original = Session.create_client
        jobs = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            if client.meta.service_model.service_name == "bedrock":
                jobs.attach(client)
            return client

        with mock.patch.object(Session, "create_client", create_client):
            yield self

    def attach(self, client: Any) -> None:
        def keep(params: Any = None, model: Any = None, context: Any = None, **_: Any) -> None:
            if context is not None and model is not None and model.name in OPERATIONS:
                context[_PARAMS_KEY] = dict(params or {})

        def answer(model: Any = None, context: Any = None, **_: Any) -> Any:
            if model is None or model.name not in OPERATIONS or model.service_model.service_name != "bedrock":
                return None
            params = (context or {}).get(_PARAMS_KEY) or {}
            try:
                parsed = self.create(params) if model.name == OPERATIONS[0] else self.get(params)
            except BatchValidation as exc:
                return _response(400, {"Error": {"Code": "ValidationException", "Message": str(exc)}})
            except KeyError as exc:
                return _response(404, {"Error": {"Code": "ResourceNotFoundException", "Message": str(exc.args[0])}})
            return _response(200, parsed)

        # On the generic "before-call", registered last: botocore runs the handlers of a more
        # specific event name ("before-call.bedrock") before the generic ones, so a handler there
        # would answer before the IAM enforcer's (registered first on "before-call") could refuse.
        client.meta.events.register("before-parameter-build.bedrock", keep)
        client.meta.events.register_last("before-call", answer)

    def inject(self, fault: JobFault) -> None:
        """The next job created does ``fault`` (one job per call, in order)."""
        with self._lock:
            self._faults.append(fault)

    # ---------------------------------------------------------------- the API
    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        invocation_type = params.get("modelInvocationType", "InvokeModel")
        if invocation_type != "Converse":
            raise BatchValidation(
                f"the embedded AWS runs modelInvocationType 'Converse' jobs only, got {invocation_type!r}"
            )
        model_id = str(params["modelId"])
        if not model_id.startswith("local."):
            raise BatchValidation(f"the embedded AWS answers local.* models only, got {model_id!r}")
        input_uri = params["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        output_uri = params["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        _split_s3(input_uri), _split_s3(output_uri if output_uri.endswith("/") else output_uri + "/")
        token = params.get("clientRequestToken")
        with self._lock:
            if token:
                for job in self._jobs.values():
                    if job.token == token:
                        return {"jobArn": job.arn}
            job_id = hashlib.sha256(f"{params['jobName']}|{token}|{len(self._jobs)}".encode()).hexdigest()[:12]
            arn = f"arn:aws:bedrock:{self.region}:{self.account_id}:model-invocation-job/{job_id}"
            self._check_trust(str(params["roleArn"]), arn)
            self._jobs[arn] = _Job(
                arn, job_id, str(params["jobName"]), model_id, str(params["roleArn"]), input_uri, output_uri,
                invocation_type, token, self.clock.now(), fault=self._faults.pop(0) if self._faults else None,
            )
        return {"jobArn": arn}

    def _check_trust(self, role_arn: str, job_arn: str) -> None:
        """``BatchValidation`` unless the role's trust policy lets bedrock.amazonaws.com assume it
        for ``job_arn`` (aws:SourceAccount = this account, aws:SourceArn = the job's ARN)."""
        import boto3

        name = role_arn.rsplit("/", 1)[-1]
        try:
            with iam.acting_as(iam.LOCAL_ADMIN):
                role = boto3.client("iam", region_name=self.region).get_role(RoleName=name)["Role"]
        except Exception as exc:  # noqa: BLE001 - no such role: Bedrock can't assume it
            raise BatchValidation(f"the service role {role_arn} can't be read: {exc}") from None
        document = role["AssumeRolePolicyDocument"]
        if isinstance(document, str):
            document = json.loads(urllib.parse.unquote(document))
        context = {"aws:sourceaccount": self.account_id, "aws:sourcearn": job_arn}
        for statement in _as_list(document.get("Statement")):
            services = _as_list((statement.get("Principal") or {}).get("Service"))
            if (
                statement.get("Effect") == "Allow"
                and "sts:AssumeRole" in _as_list(statement.get("Action"))
                and "bedrock.amazonaws.com" in services
                and _conditions_hold(statement.get("Condition") or {}, context)
            ):
                return
        raise BatchValidation(
            f"Amazon Bedrock can't assume the service role {role_arn} for {job_arn}: its trust policy has no "
            "statement allowing bedrock.amazonaws.com sts:AssumeRole whose conditions this job meets"
        )

    def get(self, params: dict[str, Any]) -> dict[str, Any]:
        identifier = str(params["jobIdentifier"])
        with self._lock:
            job = self._jobs.get(identifier) or next((j for j in self._jobs.values() if j.job_id == identifier), None)
            if job is None:
                raise KeyError(f"no model invocation job {identifier!r}")
            self._advance(job)
            return self._describe(job)

    # ---------------------------------------------------------------- the job
    def _advance(self, job: _Job) -> None:
        now = self.clock.now()
        if job.status == "Submitted" and now >= job.submitted_at + self.submitted_seconds:
            try:
                inputs = self._read_inputs(job)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the job's failure
                self._end(job, "Failed", f"the job could not read its input as {job.role_arn}: {exc}")
                return
            job.records = sum(1 for _, lines in inputs for line in lines if line.strip())
            if job.records < self.min_records:
                self._end(job, "Failed", f"the job has {job.records} record(s), fewer than the minimum number of "
                                         f"records per batch inference job ({self.min_records})")
                return
            if job.fault is not None and job.fault.status is not None:
                self._end(job, job.fault.status, job.fault.message)
                return
            job.status = "InProgress"
            job.ends_at = now + max(self.min_in_progress_seconds, self.seconds_per_record * job.records)
            self._pending[job.arn] = inputs
        if job.status == "InProgress" and job.ends_at is not None and now >= job.ends_at:
            inputs = self._pending.pop(job.arn)
            try:
                self._run(job, inputs)
            except Exception as exc:  # noqa: BLE001 - any failure to write is the job's failure
                self._end(job, "Failed", f"the job could not write its output as {job.role_arn}: {exc}")
                return
            partial = job.fault is not None and job.fault.unanswered > 0
            self._end(job, "PartiallyCompleted" if partial else "Completed", None)

    def _end(self, job: _Job, status: str, message: str | None) -> None:
        job.status, job.message, job.ended_at = status, message, self.clock.now()

    def _s3(self) -> Any:
        import boto3

        return boto3.client("s3", region_name=self.region)

    def _read_inputs(self, job: _Job) -> list[tuple[str, list[str]]]:
        bucket, key = _split_s3(job.input_uri)
        with iam.acting_as(iam.role_principal(job.role_arn, "bedrock-batch")):
            s3 = self._s3()
            if key.endswith(".jsonl"):
                keys = [key]
            else:
                pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
                keys = sorted(o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".jsonl"))
            if not keys:
                raise BatchValidation(f"no .jsonl file at {job.input_uri}")
            return [
                (k, s3.get_object(Bucket=bucket, Key=k)["Body"].read().decode("utf-8").splitlines()) for k in keys
            ]

    def _run(self, job: _Job, inputs: list[tuple[str, list[str]]]) -> None:
        bucket, prefix = _split_s3(job.output_uri if job.output_uri.endswith("/") else job.output_uri + "/")
        fault = job.fault or JobFault()
        records = [(k, line) for k, lines in inputs for line in lines if line.strip()]
        answered = records[: len(records) - fault.unanswered] if fault.unanswered else records
        outputs: dict[str, str] = {k.rsplit("/", 1)[-1]: "" for k, _ in inputs}
        for number, (k, line) in enumerate(answered):
            failed = fault.error_code if number < fault.error_records else None
            outputs[k.rsplit("/", 1)[-1]] += self._answer(job, line, failed) + "\n"
        with iam.acting_as(iam.role_principal(job.role_arn, "bedrock-batch")):
            s3 = self._s3()
            for name, body in outputs.items():
                s3.put_object(Bucket=bucket, Key=f"{prefix}{job.job_id}/{name}.out", Body=body.encode("utf-8"))

    def _answer(self, job: _Job, line: str, error_code: int | None = None) -> str:
        try:
            record = json.loads(line)
            body = record["modelInput"]
            if error_code is not None:
                return json.dumps({"recordId": record.get("recordId"), "modelInput": body,
                                   "error": {"errorCode": error_code, "errorMessage": "injected record failure"}})
            config = body.get("inferenceConfig") or {}
            completion = self.provider.converse(
                model_id=job.model_id,
                system="".join(b["text"] for b in body.get("system", [])),
                user="".join(b["text"] for m in body["messages"] for b in m["content"] if "text" in b),
                parameters=InferenceParameters(
                    max_tokens=int(config.get("maxTokens", 512)), temperature=float(config.get("temperature", 0.0))
                ),
            )
        except Exception as exc:  # noqa: BLE001 - a record Bedrock can't run is an error line, not a failed job
            record = record if isinstance(locals().get("record"), dict) else {}
            return json.dumps({"recordId": record.get("recordId"), "modelInput": record.get("modelInput"),
                               "error": {"errorCode": 400, "errorMessage": f"{type(exc).__name__}: {exc}"}})
        output = {
            "output": {"message": {"role": "assistant", "content": [{"text": completion.text}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": completion.input_tokens, "outputTokens": completion.output_tokens,
                      "totalTokens": completion.input_tokens + completion.output_tokens},
        }
        return json.dumps({"recordId": record.get("recordId"), "modelInput": body, "modelOutput": output})

    def _describe(self, job: _Job) -> dict[str, Any]:
        def ts(t: float | None) -> datetime | None:
            return datetime.fromtimestamp(t, UTC) if t is not None else None

        described: dict[str, Any] = {
            "jobArn": job.arn,
            "jobName": job.name,
            "modelId": job.model_id,
            "roleArn": job.role_arn,
            "status": job.status,
            "submitTime": ts(job.submitted_at),
            "lastModifiedTime": ts(job.ended_at or self.clock.now()),
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": job.input_uri}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": job.output_uri}},
        }
        if job.token:
            described["clientRequestToken"] = job.token
        if job.message:
            described["message"] = job.message
        if job.ended_at is not None:
            described["endTime"] = ts(job.ended_at)
        return described


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _conditions_hold(condition: dict[str, Any], context: dict[str, str]) -> bool:
    """A trust statement's conditions on the keys Bedrock sets (operators: String/Arn Equals/Like);
    an operator or key this model doesn't know refuses, rather than pass unchecked."""
    for operator, tests in condition.items():
        like = operator in ("StringLike", "ArnLike")
        if operator not in ("StringEquals", "StringLike", "ArnEquals", "ArnLike"):
            raise BatchValidation(f"trust policy condition operator {operator!r} is not modelled by the embedded AWS")
        for key, expected in tests.items():
            actual = context.get(key.lower())
            if actual is None:
                raise BatchValidation(f"trust policy condition key {key!r} is not one Bedrock sets here")
            # ArnEquals compares like ArnLike (wildcards per ARN segment), per the IAM condition operators.
            if not any(
                fnmatch.fnmatchcase(actual, str(e)) if like or operator == "ArnEquals" else actual == str(e)
                for e in _as_list(expected)
            ):
                return False
    return True


def _response(status: int, parsed: dict[str, Any]) -> Any:
    from botocore.awsrequest import AWSResponse

    from modelgate_emulator.iam import _Raw

    body = json.dumps(parsed, default=str).encode()
    parsed = {**parsed, "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0}}
    return AWSResponse(url="https://local.modelgate/", status_code=status, headers={}, raw=_Raw(body)), parsed
