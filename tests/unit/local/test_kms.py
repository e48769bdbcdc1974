"""The embedded KMS: an AWS::KMS::Key from the template, Sign with MessageType DIGEST as AWS
signs it (not hashed again), the 4096-byte limit on a raw message (modelgate_emulator.kms)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from modelgate_emulator import LocalAWS
from modelgate_emulator.kms import digest_signing
from moto import mock_aws


@pytest.fixture
def kms(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws(), digest_signing():
        yield boto3.client("kms", region_name="us-east-1")


def signing_key(kms, spec: str = "ECC_NIST_P256") -> tuple[str, ec.EllipticCurvePublicKey]:
    key_id = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])
    return key_id, public


def test_a_digest_is_signed_as_a_digest_and_verifies_with_the_real_public_key(kms):
    key_id, public = signing_key(kms)
    digest = hashlib.sha256(b"the message").digest()
    signature = kms.sign(KeyId=key_id, Message=digest, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")
    public.verify(signature["Signature"], digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    # the same as signing the message raw: "a message and its hash digest are considered the same message"
    public.verify(signature["Signature"], b"the message", ec.ECDSA(hashes.SHA256()))
    assert signature["KeyId"].startswith("arn:aws:kms:us-east-1:") and signature["SigningAlgorithm"] == "ECDSA_SHA_256"


def test_a_raw_message_is_still_signed_raw(kms):
    key_id, public = signing_key(kms)
    signature = kms.sign(KeyId=key_id, Message=b"raw", MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    public.verify(signature, b"raw", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(signature, b"raw!", ec.ECDSA(hashes.SHA256()))


def test_a_raw_message_over_4096_bytes_is_refused(kms):
    key_id, _ = signing_key(kms)
    kms.sign(KeyId=key_id, Message=b"x" * 4096, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")
    with pytest.raises(ClientError, match="less than or equal to 4096"):
        kms.sign(KeyId=key_id, Message=b"x" * 4097, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")


def test_a_digest_of_the_wrong_length_is_refused(kms):
    key_id, _ = signing_key(kms)
    with pytest.raises(ClientError, match="Digest is invalid length for algorithm ECDSA_SHA_256: 31 bytes, 32"):
        kms.sign(KeyId=key_id, Message=b"x" * 31, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")


def test_a_key_that_does_not_sign_or_the_wrong_algorithm_is_refused(kms):
    encrypt = kms.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    with pytest.raises(ClientError, match="not SIGN_VERIFY"):
        kms.sign(KeyId=encrypt, Message=b"x" * 32, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")
    p384, _ = signing_key(kms, "ECC_NIST_P384")
    with pytest.raises(ClientError, match="SigningAlgorithm"):
        kms.sign(KeyId=p384, Message=b"x" * 32, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")


def test_the_template_deploys_an_asymmetric_signing_key_with_its_policy(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        'AWSTemplateFormatVersion: "2010-09-09"\nResources:\n'
        "  Key:\n    Type: AWS::KMS::Key\n    Properties:\n      KeySpec: ECC_NIST_P256\n      KeyUsage: SIGN_VERIFY\n"
        "      KeyPolicy:\n        Version: '2012-10-17'\n        Statement:\n          - Sid: Account\n"
        "            Effect: Allow\n            Principal: {AWS: !Sub 'arn:aws:iam::${AWS::AccountId}:root'}\n"
        "            Action: 'kms:*'\n            Resource: '*'\n"
        "Outputs:\n  KeyArn:\n    Value: !GetAtt Key.Arn\n  KeyId:\n    Value: !Ref Key\n",
    )
    with LocalAWS(template, enforce_iam=False, echo_logs=False) as local:
        kms = local.client("kms")
        outputs = local.stack.outputs
        metadata = kms.describe_key(KeyId=outputs["KeyId"])["KeyMetadata"]
        assert (metadata["KeySpec"], metadata["KeyUsage"], metadata["Arn"]) == (
            "ECC_NIST_P256", "SIGN_VERIFY", outputs["KeyArn"])
        policy = json.loads(kms.get_key_policy(KeyId=outputs["KeyId"], PolicyName="default")["Policy"])
        assert policy["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{local.account_id}:root"}
        # and LocalAWS signs digests as AWS does
        digest = hashlib.sha256(b"m").digest()
        signature = kms.sign(KeyId=outputs["KeyArn"], Message=digest, MessageType="DIGEST",
                             SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        public = serialization.load_der_public_key(kms.get_public_key(KeyId=outputs["KeyId"])["PublicKey"])
        public.verify(signature, b"m", ec.ECDSA(hashes.SHA256()))
