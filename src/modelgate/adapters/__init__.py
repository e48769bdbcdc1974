"""Adapters: every boto3 call Modelgate makes on the release path, each taking its client."""
