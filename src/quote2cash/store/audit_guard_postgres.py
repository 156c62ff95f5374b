"""PostgreSQL triggers that keep the audit log append-only and each chain's head moving forward.

The SQL goes through the driver's placeholder pass, hence ``%%`` for PL/pgSQL's ``%``.
"""

from __future__ import annotations

from sqlalchemy import Connection

_FUNCTIONS = """
CREATE OR REPLACE FUNCTION q2c_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: %% refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE OR REPLACE FUNCTION q2c_audit_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'audit_head: %% refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END IF;
    -- Everything but seq and hash is the row's identity (chain or id, store id): it never
    -- changes. Compared as JSON so one function guards the head before and after 0013.
    IF NEW.seq < OLD.seq OR (NEW.seq = OLD.seq AND NEW.hash <> OLD.hash)
       OR (to_jsonb(NEW) - 'seq' - 'hash') IS DISTINCT FROM (to_jsonb(OLD) - 'seq' - 'hash') THEN
        RAISE EXCEPTION 'audit_head moves forward only (from %% to %%)', OLD.seq, NEW.seq
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
"""

_TRIGGERS = """
CREATE TRIGGER q2c_audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION q2c_audit_append_only();
CREATE TRIGGER q2c_audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION q2c_audit_append_only();
CREATE TRIGGER q2c_audit_head_forward BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION q2c_audit_head_forward_only();
CREATE TRIGGER q2c_audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION q2c_audit_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
REVOKE DELETE, TRUNCATE ON audit_head FROM PUBLIC;
"""

_DROP = """
DROP TRIGGER IF EXISTS q2c_audit_log_no_change ON audit_log;
DROP TRIGGER IF EXISTS q2c_audit_log_no_truncate ON audit_log;
DROP TRIGGER IF EXISTS q2c_audit_head_forward ON audit_head;
DROP TRIGGER IF EXISTS q2c_audit_head_no_truncate ON audit_head;
DROP FUNCTION IF EXISTS q2c_audit_append_only();
DROP FUNCTION IF EXISTS q2c_audit_head_forward_only();
"""


def install(conn: Connection) -> None:
    conn.exec_driver_sql(_FUNCTIONS)
    conn.exec_driver_sql(_TRIGGERS)


def remove(conn: Connection) -> None:
    conn.exec_driver_sql(_DROP)
