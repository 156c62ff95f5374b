"""Usage files shared by the reading and intake tests."""

RAGGED_CSV = (
    "id,subscription,meter,quantity,timestamp\n"
    "a,C-1,api_calls,1,2026-03-20T10:00:00Z\n"
    "b,C-1,api_calls,1,2026-03-20T10:00:00Z,extra,more\n"
    "c,C-1\n"
    "d,C-1,api_calls,2,2026-03-21T10:00:00Z\n"
)
"""A plain CSV file with rows of the wrong width: one too wide (rejected), one too short."""
