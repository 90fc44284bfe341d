"""JetStream API errors: nats-server 2.15's codes, err_codes and texts.

Every API failure is an ApiError; its body() is the `"error"` object of
the JSON response, `{"code": HTTP-like, "err_code": JetStream code,
"description": text}`. The constants below are (code, err_code, text)
triples copied from nats-server's errors.json for the mistakes this
server recognises; a text with `{name}` fields is formatted by `err()`.
"""


class ApiError(Exception):
    def __init__(self, code, err_code, description):
        Exception.__init__(self, description)
        self.code = code
        self.err_code = err_code
        self.description = description

    def body(self):
        return {"code": self.code, "err_code": self.err_code, "description": self.description}


def err(kind, **fields):
    code, err_code, text = kind
    return ApiError(code, err_code, text.format(**fields) if fields else text)


BAD_REQUEST = (400, 10003, "bad request")
INVALID_JSON = (400, 10025, "invalid JSON: {err}")
NOT_EMPTY_REQUEST = (400, 10038, "expected an empty request payload")
STREAM_NOT_FOUND = (404, 10059, "stream not found")
STREAM_MISMATCH = (400, 10056, "stream name in subject does not match request")
STREAM_NAME_EXIST = (400, 10058, "stream name already in use with a different configuration")
SUBJECT_OVERLAP = (400, 10065, "subjects overlap with an existing stream")
INVALID_CONFIG = (500, 10052, "{err}")
STREAM_CREATE = (500, 10049, "{err}")
REPLICAS_NOT_SUPPORTED = (500, 10074, "replicas > 1 not supported in non-clustered mode")
REPLICAS_NEGATIVE = (400, 10133, "replicas count cannot be negative")
MAX_STREAMS = (400, 10027, "maximum number of streams reached")
MAX_CONSUMERS_LIMIT = (400, 10026, "maximum consumers limit reached")
MAX_BYTES_REQUIRED = (400, 10113, "account requires a stream config to have max bytes set")
STREAM_MAX_BYTES_EXCEEDED = (400, 10122, "stream max bytes exceeds account limit max stream bytes")
ACCOUNT_RESOURCES_EXCEEDED = (400, 10002, "resource limits exceeded for account")
NOT_ENABLED_FOR_ACCOUNT = (503, 10039, "JetStream not enabled for account")
UNAVAILABLE = (503, 10008, "JetStream system temporarily unavailable")
INSUFFICIENT_RESOURCES = (503, 10023, "insufficient resources")
MEMORY_EXCEEDED = (500, 10028, "insufficient memory resources available")
STORAGE_EXCEEDED = (500, 10047, "insufficient storage resources available")
TRANSFORM_INVALID = (400, 10156, "stream transform: {err}")
NO_MESSAGE_FOUND = (404, 10037, "no message found")
SEQUENCE_NOT_FOUND = (400, 10043, "sequence {seq} not found")
MSG_DELETE_FAILED = (500, 10057, "{err}")
PURGE_FAILED = (500, 10110, "{err}")
SEALED = (400, 10109, "invalid operation on sealed stream")
STREAM_GENERAL = (500, 10051, "{err}")
STREAM_UPDATE = (500, 10069, "{err}")
# publish acknowledgements
EXPECTED_STREAM = (400, 10060, "expected stream does not match")
WRONG_LAST_SEQUENCE = (400, 10071, "wrong last sequence: {seq}")
WRONG_LAST_MSG_ID = (400, 10070, "wrong last msg ID: {id}")
ROLLUP_FAILED = (500, 10111, "{err}")
MESSAGE_TOO_BIG = (400, 10054, "message size exceeds maximum allowed")
HEADER_TOO_BIG = (400, 10097, "header size exceeds maximum allowed of 64k")
STORE_FAILED = (503, 10077, "{err}")
TTL_INVALID = (400, 10165, "invalid per-message TTL")
TTL_DISABLED = (400, 10166, "per-message TTL is disabled")
