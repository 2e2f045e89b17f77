"""Schemathesis hooks: sends generated import bodies as JSON Lines.

The import route takes `application/x-ndjson` (one JSON document per line),
a media type schemathesis has no serializer for. A generated array becomes
one line per item; any other value becomes a single line.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson", "application/jsonl", "application/json-lines")
def json_lines(ctx, value):
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()
