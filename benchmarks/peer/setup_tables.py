"""Creates the peer's two tables in the emulator if missing (keys as in template.yaml) and puts
one account for the benchmark user, so the list route has an item to decode.

Run by tools/bench-cold-start with the peer's Python; needs AWS_ENDPOINT_URL (refuses real AWS).
"""
import json
import os
import sys

import boto3

if not os.environ.get("AWS_ENDPOINT_URL"):
    sys.exit("setup_tables.py: AWS_ENDPOINT_URL is not set; refusing to create tables in real AWS")

dynamodb = boto3.client("dynamodb")
existing = set(dynamodb.list_tables()["TableNames"])
for table, sort_key in ((os.environ["ACCOUNTS_TABLE"], "account_id"), (os.environ["TARGETS_TABLE"], "sk")):
    if table in existing:
        continue
    dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": sort_key, "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "user_id", "KeyType": "HASH"},
            {"AttributeName": sort_key, "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})

user = sys.argv[1] if len(sys.argv) > 1 else "alice"
dynamodb.put_item(
    TableName=os.environ["ACCOUNTS_TABLE"],
    Item={
        "user_id": {"S": user},
        "account_id": {"S": "bench-email"},
        "account_type": {"S": "email"},
        "provider": {"S": "smtp"},
        "label": {"S": "Benchmark mailbox"},
        "configuration": {"S": json.dumps({"host": "smtp.example.com", "port": 587, "password": "********"})},
        "secret_paths": {"L": [{"L": [{"S": "password"}]}]},
        "secrets": {"M": {"ciphertext": {"S": "bench"}, "key_id": {"S": "bench"}}},
        "connected": {"BOOL": True},
        "created_at": {"S": "2026-11-25T16:00:00Z"},
        "updated_at": {"S": "2026-11-25T16:00:00Z"},
        "version": {"N": "1"},
    },
)
