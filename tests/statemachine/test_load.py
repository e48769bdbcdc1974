"""Load: 20 services releasing at once on the embedded AWS (issue #10); `make test` runs 8 at
once, the 20 are the scale run (marked slow: `make test-slow`).

Every release ends where it should (Promoted, its service's live alias on its candidate),
no ledger record is left at a non-final status and no service lock is held. The releases
are kept small (a 5-case dataset, all traffic at once, a 60 s watch) so the test is about
concurrency, not evaluation volume; nothing here is timed.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from modelgate_harness.control import put_dataset
from modelgate_harness.polling import wait_until

from modelgate.adapters.lambda_alias import alias_state
from modelgate.ledger import FINAL_STATUSES
from modelgate.policy import ReleasePolicy, ServiceConfig, managed_function_prefix

ROOT = Path(__file__).resolve().parents[2]
CASES = 5
HANG_GUARD_SECONDS = 900  # a hang guard, no speed limit


def _inference_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(ROOT / "functions" / "inference" / "app.py", "app.py")
    return buffer.getvalue()


def _register(pipeline, service: str, code: bytes, dataset: Path) -> str:
    """README "Adding a service": its function with a live alias, its own role (reads only its
    releases), its registration and its dataset. Returns the function's name."""
    control = pipeline.control
    function_name = managed_function_prefix(control.stack_name) + service
    iam = control.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role_name = f"{control.stack_name}-svc-{service}-role"
    role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    bucket_arn = f"arn:aws:s3:::{control.bucket}"
    iam.put_role_policy(RoleName=role_name, PolicyName="ReadOwnReleases", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                                                "Resource": [f"{bucket_arn}/releases/{service}/*",
                                                             f"{bucket_arn}/reports/{service}/*/prompt-pin.json"]}]}))
    lambda_ = control.client("lambda")
    lambda_.create_function(
        FunctionName=function_name, Runtime="python3.12", Role=role, Handler="app.lambda_handler",
        Code={"ZipFile": code}, Timeout=30,
        Environment={"Variables": {"MODEL_PROVIDER": "local", "MODEL_CONFIG_BUCKET": control.bucket,
                                   "POWERTOOLS_SERVICE_NAME": service}},
    )
    version = lambda_.publish_version(FunctionName=function_name)["Version"]
    lambda_.create_alias(FunctionName=function_name, Name="live", FunctionVersion=version)
    policy = ReleasePolicy(approval="auto", rollout="AllAtOnce", post_promotion_watch_seconds=60, min_cases=5)
    config = ServiceConfig(service=service, function_name=function_name,
                           dataset_key=f"datasets/{service}/dataset.jsonl", policy=policy)
    control.client("ssm").put_parameter(
        Name=control.outputs["ServicesPrefix"] + service, Type="String", Value=config.model_dump_json())
    put_dataset(control, service, dataset)
    return function_name


def _release_folder(tmp_path: Path, examples: Path, service: str) -> Path:
    folder = tmp_path / service
    shutil.copytree(examples / "v1", folder)
    manifest = json.loads((folder / "model-config.json").read_text())
    manifest["service"] = service
    (folder / "model-config.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("services", [8, pytest.param(20, marks=pytest.mark.slow)])
def test_services_release_at_once_and_every_release_ends_where_it_should(pipeline, tmp_path, services):
    # Given services registered beside the sample service, each with a small dataset
    names = [f"load-{i:02d}" for i in range(services)]
    dataset = tmp_path / "dataset.jsonl"
    dataset.write_text("".join((pipeline.examples / "dataset.jsonl").read_text().splitlines(keepends=True)[:CASES]))
    code = _inference_zip()
    functions = {service: _register(pipeline, service, code, dataset) for service in names}
    folders = {service: _release_folder(tmp_path, pipeline.examples, service) for service in names}
    sample_before = pipeline.live()
    driver = pipeline.driver

    # When CI uploads a release of each at once
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        submitted = dict(zip(names, pool.map(
            lambda s: driver.submit(folders[s], commit=pipeline.commit_for(f"load {s}")), names), strict=True))
        runs = dict(zip(names, pool.map(lambda s: driver.finish(submitted[s]), names), strict=True))

    # Then every release was promoted and its own service's live alias serves its candidate alone
    outcomes = {s: (run.status, run.record.get("reason")) for s, run in runs.items()}
    assert all(status == "Promoted" for status, _ in outcomes.values()), outcomes
    lambda_ = pipeline.control.client("lambda")
    for service, run in runs.items():
        assert run.execution["status"] == "SUCCEEDED", (service, run.path, run.execution.get("error"),
                                                        run.execution.get("cause"))
        assert run.record["service"] == service
        assert alias_state(lambda_, functions[service], "live") == (str(run.record["candidate_version"]), {}), service
    # And no record is left at a non-final status, no lock is held, no canary alarm is left
    ledger = pipeline.control.ledger()
    records = [r for service in names for r in ledger.list_releases(service=service, limit=50)]
    assert len(records) == len(names)
    assert not [(r["release_id"], r.get("status")) for r in records if r.get("status") not in FINAL_STATUSES]
    assert not [service for service in names if ledger.lock_holder(service) is not None]
    assert not [a for a in pipeline.alarms() if "-canary-" in a]
    # And the sample service was not touched
    assert pipeline.live() == sample_before
    # And each promotion's drift baseline, asked of the monitor function after Promote returned
    # (asynchronously, off the releases' critical path), is built and journalled: the ledger's pointer
    def baselines_done():
        done = {r["release_id"]: r.get("baseline_key") or r.get("baseline_error")
                for r in (ledger.get(run.release_id) or {} for run in runs.values())}
        return done if all(done.values()) else None

    built = wait_until(baselines_done, HANG_GUARD_SECONDS, "every promotion's baseline task")
    assert all(str(v).endswith("/baseline.json") for v in built.values()), built
