"""Read models: tables answering a read in a few indexed lookups however long the log grows,
kept in step by the engine's projection hooks (engine/projections.py) in the same transaction
as the step record or completion that changes them. The flows register them; the SQL lives here
(flows/ never touches the store)."""
