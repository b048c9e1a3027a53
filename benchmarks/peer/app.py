"""Benchmark peer, NOT part of the service: two routes of the User API written the way a typical
Python team would (FastAPI + Mangum + boto3, clients built at import), to compare cold starts with
the Rust functions under tools/bench-cold-start. See README.md.

Run as a Lambda handler: `python -m awslambdaric app.handler` (cwd = this directory).
"""
import json
import os
import uuid
from datetime import datetime, timezone
from typing import Optional

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from fastapi import FastAPI, HTTPException, Request
from mangum import Mangum
from pydantic import BaseModel, ConfigDict, Field, field_validator

ACCOUNTS_TABLE = os.environ["ACCOUNTS_TABLE"]
TARGETS_TABLE = os.environ["TARGETS_TABLE"]
QUOTA_ITEM = "#quota"

# Module-level clients, reused across invocations (endpoint from AWS_ENDPOINT_URL when set).
dynamodb = boto3.client("dynamodb")
kms = boto3.client("kms")  # what the secrets routes would use; built at import like the rest

deserializer = TypeDeserializer()
serializer = TypeSerializer()

app = FastAPI(title="PipeWise User API (benchmark peer)")


def current_user(request: Request) -> str:
    """The API Gateway JWT authorizer already verified the token; take its `sub`."""
    try:
        return request.scope["aws.event"]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    except (KeyError, TypeError):
        raise HTTPException(status_code=401, detail="unauthorized")


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@app.get("/api/user/integrations/accounts")
def list_accounts(request: Request, account_type: Optional[str] = None):
    user = current_user(request)
    accounts = []
    paginator = dynamodb.get_paginator("query")
    for page in paginator.paginate(
        TableName=ACCOUNTS_TABLE,
        KeyConditionExpression="user_id = :user",
        ExpressionAttributeValues={":user": {"S": user}},
    ):
        for raw in page.get("Items", []):
            item = {k: deserializer.deserialize(v) for k, v in raw.items()}
            if item["account_id"] == QUOTA_ITEM:
                continue
            if account_type and item.get("account_type") != account_type:
                continue
            accounts.append(
                {
                    "account_id": item["account_id"],
                    "account_type": item.get("account_type"),
                    "provider": item.get("provider"),
                    "label": item.get("label"),
                    "configuration": json.loads(item.get("configuration") or "{}"),
                    "secret_fields": [".".join(p) for p in item.get("secret_paths") or []],
                    "connected": bool(item.get("connected")),
                    "status_reason": item.get("status_reason"),
                    "expires_at": item.get("expires_at"),
                    "created_at": item.get("created_at"),
                    "updated_at": item.get("updated_at"),
                }
            )
    return {"accounts": accounts, "total": len(accounts)}


class CreateTarget(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    email: Optional[str] = Field(default=None, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
    twitter_username: Optional[str] = Field(default=None, pattern=r"^@?[A-Za-z0-9_]{1,15}$")
    instagram_username: Optional[str] = Field(default=None, pattern=r"^@?[A-Za-z0-9._]{1,30}$")
    notes: Optional[str] = Field(default=None, max_length=2000)

    @field_validator("email")
    @classmethod
    def lower(cls, value):
        return value.lower() if value else value

    @field_validator("twitter_username", "instagram_username")
    @classmethod
    def strip_at(cls, value):
        return value.removeprefix("@") if value else value


@app.post("/api/user/communication-targets", status_code=201)
def create_target(request: Request, body: CreateTarget):
    user = current_user(request)
    target_id = str(uuid.uuid4())
    now = now_rfc3339()
    target = {
        "id": target_id,
        "name": body.name,
        "email": body.email,
        "twitter_username": body.twitter_username,
        "instagram_username": body.instagram_username,
        "notes": body.notes,
        "active": True,
        "created_at": now,
        "updated_at": now,
    }
    item = {"user_id": user, "sk": f"T#{target_id}", **target, "version": 1}
    try:
        dynamodb.put_item(
            TableName=TARGETS_TABLE,
            Item={k: serializer.serialize(v) for k, v in item.items() if v is not None},
            ConditionExpression="attribute_not_exists(sk)",
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise HTTPException(status_code=409, detail="target already exists")
    return target


handler = Mangum(app, lifespan="off")
