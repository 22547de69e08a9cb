"""PostgreSQL: the contended release and its handoff as server-side functions

Under contention a release, with the direct handoff to the head of the queue,
took about a dozen statements, each a round trip with the server's Python in
between, while it held the limit's row lock; everyone else queued on that lock.
``headway_release`` does the same work in one statement: it locks the lease's
limits in name order, deletes the lease, gives its slots back and hands them
on (``headway_hand_off``). Every other caller of the handoff (a cancel, a reap,
a limit raised, enabled, reset or deleted) calls ``headway_hand_off`` inside its
own transaction, so PostgreSQL has one handoff, written here, and SQLite keeps
the Python one (``store/slots/handoff.py``); both follow ``core.limits``
(``plan_wakeups``, ``decide``, ``queue_depth``), and the admission property
test holds them to it. The functions return what the caller needs as JSON:
the lease's rows, the grants made (for their events) and the waiters woken
(notified here already, inside the transaction).

Each PL/pgSQL function runs with ``plan_cache_mode = force_generic_plan``: left
to choose, PostgreSQL planned their statements afresh at every call (a custom
plan per call cost more than running it: 165 against 55 us of CPU for the
decision's read), and the plans do not depend on the values.

SQLite has no functions of this kind: nothing changes there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14
"""

from __future__ import annotations

import math

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: The constants of ``core`` the functions are written with, as they were when
#: this revision was made: a test checks that ``core`` still has them (a change
#: there needs a revision that makes the functions again).
EPSILON = 1e-9  # core.limits.EPSILON
SLOT_WAIT = "slot_wait"  # core.events.SLOT_WAIT
WAIT_BOUNDS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0, math.inf,
)  # fmt: skip  # core.events.HISTOGRAM_BOUNDS


def render(statement: str) -> str:
    """``statement`` with this revision's constants written in."""
    bounds = ",".join("Infinity" if math.isinf(b) else repr(b) for b in WAIT_BOUNDS)
    return (
        statement.replace("@EPSILON@", repr(EPSILON))
        .replace("@SLOT_WAIT@", SLOT_WAIT)
        .replace("@WAIT_BOUNDS@", "{" + bounds + "}")
    )


#: A rate limit's occupancy drained to ``now`` (``core.limits.decayed``).
DECAYED = """
CREATE FUNCTION headway_decayed(
    active_slots double precision, decay double precision,
    decayed_at double precision, now double precision
) RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN decay <= 0 OR now <= decayed_at THEN active_slots
                ELSE greatest(0.0::double precision, active_slots - decay * (now - decayed_at))
           END
$$
"""

#: The limits named (those that exist) as a decision sees them, with the live
#: requests queued ahead of (priority, seq) on each (``rows.read_for_acquire``).
LIMIT_VIEW = """
CREATE FUNCTION headway_limit_view(
    p_names text[], p_priority integer, p_seq bigint, p_now double precision
) RETURNS TABLE (
    name text, slot_limit integer, active boolean, active_slots double precision,
    decay double precision, ahead bigint, ahead_slots bigint
) LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    -- PL/pgSQL, not SQL: its plan is kept by the session, not made at every call.
    -- STABLE: it reads in the snapshot of the statement that calls it.
    RETURN QUERY
    SELECT l.name::text, l.slot_limit, l.active,
           headway_decayed(l.active_slots, l.slot_decay_per_second, l.decayed_at, p_now),
           l.slot_decay_per_second, a.n, a.slots
    FROM limits l CROSS JOIN LATERAL (
        SELECT COUNT(*) AS n, COALESCE(SUM(w.slots), 0)::bigint AS slots FROM waiters w
        WHERE w.limit_name = l.name AND w.expires > p_now
          AND (w.priority > p_priority OR (w.priority = p_priority AND w.seq < p_seq))
    ) a
    WHERE l.name = ANY(p_names)
    ORDER BY l.name COLLATE "C";
END
$$
"""

#: Take the slots a decision granted (``rows.write_grant``): the request out of
#: its queues (``p_queued_as``, on the limits ``p_known``), the counters, the
#: wait histogram, the lease. Returns the lease id (None: rate tokens, or
#: nothing limited). The caller records the events.
WRITE_GRANT = """
CREATE FUNCTION headway_write_grant(
    p_queued_as text, p_known text[], p_limited text[], p_occupy integer, p_mode text,
    p_kind text, p_holder text, p_pid integer, p_host text, p_start bigint, p_node text,
    p_lease_seconds double precision, p_now double precision, p_waited double precision,
    p_lease_id text
) RETURNS text LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_le double precision;
    v_lease text;
BEGIN
    IF p_queued_as IS NOT NULL AND cardinality(p_known) > 0 THEN
        WITH gone AS (
            DELETE FROM waiters w WHERE w.waiter_id = p_queued_as
                AND w.limit_name = ANY(p_known) RETURNING w.limit_name
        )
        UPDATE limits l SET queued = CASE WHEN l.queued > 0 THEN l.queued - 1 ELSE 0 END
        WHERE l.name IN (SELECT g.limit_name FROM gone g);
    END IF;
    IF cardinality(p_limited) = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE limits l SET active_slots = headway_decayed(l.active_slots,
            l.slot_decay_per_second, l.decayed_at, p_now) + p_occupy,
        decayed_at = p_now, grants = l.grants + 1,
        total_wait_seconds = l.total_wait_seconds + p_waited
    WHERE l.name = ANY(p_limited);
    IF p_waited > 0 THEN
        -- core.events.bucket_of: the first bound at or above the value.
        SELECT min(b) INTO v_le FROM unnest('@WAIT_BOUNDS@'::double precision[]) b
        WHERE b >= greatest(0.0::double precision, p_waited);
        INSERT INTO histograms AS h (metric, label, le, count, total)
            SELECT '@SLOT_WAIT@', n, v_le, 1, p_waited FROM unnest(p_limited) n
        ON CONFLICT (metric, label, le) DO UPDATE
            SET count = h.count + 1, total = h.total + EXCLUDED.total;
    END IF;
    IF p_mode = 'rate' THEN
        RETURN NULL;  -- tokens are never given back: no lease
    END IF;
    v_lease := COALESCE(p_lease_id, replace(gen_random_uuid()::text, '-', ''));
    INSERT INTO leases (lease_id, limit_name, slots, holder_kind, holder_id, pid, host,
                        proc_start, created, expires, node)
        SELECT v_lease, n, p_occupy, p_kind, p_holder, p_pid, p_host, p_start, p_now,
               p_now + p_lease_seconds, p_node
        FROM unnest(p_limited) n;
    RETURN v_lease;
END
$$
"""

#: Direct handoff (``Handoff.hand_off``, which SQLite runs in Python): the room on
#: ``p_names`` (locked by the caller) goes to the head of their queues.
HAND_OFF = """
CREATE FUNCTION headway_hand_off(
    p_names text[], p_now double precision, p_waiter_ttl double precision
) RETURNS jsonb LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    eps constant double precision := @EPSILON@;  -- core.limits.EPSILON
    v_name text;
    v_depth integer;
    v_heads text[] := '{}';
    v_rem_names text[];
    v_rem double precision[];
    v_closed text[] := '{}';
    v_idx integer[];
    v_i integer;
    v_fits boolean;
    v_plan jsonb := '[]';
    r record;
    s record;
    v_req jsonb;
    v_w record;
    v_target jsonb;
    v_locked text[] := p_names;
    v_wanted text[];
    v_extra text[];
    v_got text[];
    v_slots integer;
    v_mode text;
    v_invalid boolean;
    v_grant boolean;
    v_known text[];
    v_limited text[];
    v_waited double precision;
    v_lease text;
    v_expires double precision;
    v_seconds double precision;
    v_grants jsonb := '[]';
    v_woken jsonb := '[]';
    v_left text[] := '{}';
    v_more jsonb;
BEGIN
    IF p_names IS NULL OR cardinality(p_names) = 0 THEN
        RETURN jsonb_build_object('grants', v_grants, 'woken', v_woken);
    END IF;
    -- Only the head of each queue can be granted or stop the walk
    -- (core.limits.queue_depth): a release behind a thousand waiters reads a few.
    FOREACH v_name IN ARRAY p_names LOOP
        v_depth := NULL;
        SELECT CASE WHEN l.active THEN floor(greatest(0.0::double precision, l.slot_limit
                   - headway_decayed(l.active_slots, l.slot_decay_per_second, l.decayed_at,
                                     p_now)) + eps)::integer + 1 END
          INTO v_depth FROM limits l WHERE l.name = v_name;
        v_heads := v_heads || ARRAY(
            SELECT w.waiter_id::text FROM waiters w
            WHERE w.limit_name = v_name AND w.expires > p_now
            ORDER BY w.priority DESC, w.seq LIMIT v_depth);
    END LOOP;
    IF cardinality(v_heads) = 0 THEN
        RETURN jsonb_build_object('grants', v_grants, 'woken', v_woken);
    END IF;
    -- The free slots of every active limit these requests queue on.
    SELECT COALESCE(array_agg(l.name::text ORDER BY l.name COLLATE "C"), '{}'),
           COALESCE(array_agg(greatest(0.0::double precision, l.slot_limit
               - headway_decayed(l.active_slots, l.slot_decay_per_second, l.decayed_at, p_now))
               ORDER BY l.name COLLATE "C"), '{}')
      INTO v_rem_names, v_rem
      FROM limits l
     WHERE l.active AND (l.name = ANY(p_names) OR l.name IN (
           SELECT w.limit_name FROM waiters w
           WHERE w.waiter_id = ANY(v_heads) AND w.expires > p_now));
    -- core.limits.plan_wakeups: the FIFO prefix that fits, a stuck request
    -- closing its limits to everyone behind it.
    FOR r IN
        SELECT w.waiter_id::text AS waiter_id, max(w.priority) AS priority,
               max(w.seq) AS seq, max(w.slots) AS slots,
               array_agg(w.limit_name::text ORDER BY w.limit_name COLLATE "C") AS names
        FROM waiters w WHERE w.waiter_id = ANY(v_heads) AND w.expires > p_now
        GROUP BY w.waiter_id ORDER BY max(w.priority) DESC, max(w.seq)
    LOOP
        v_idx := '{}';
        v_fits := true;
        FOREACH v_name IN ARRAY r.names LOOP
            v_i := array_position(v_rem_names, v_name);
            IF v_i IS NOT NULL THEN
                v_idx := v_idx || v_i;
                IF v_name = ANY(v_closed) OR v_rem[v_i] + eps < r.slots THEN
                    v_fits := false;
                END IF;
            END IF;
        END LOOP;
        IF v_fits THEN
            FOREACH v_i IN ARRAY v_idx LOOP
                v_rem[v_i] := v_rem[v_i] - r.slots;
            END LOOP;
            v_plan := v_plan || jsonb_build_array(jsonb_build_object('w', r.waiter_id,
                'names', to_jsonb(r.names), 'priority', r.priority, 'seq', r.seq,
                'slots', r.slots));
        ELSE
            FOREACH v_i IN ARRAY v_idx LOOP
                IF NOT v_rem_names[v_i] = ANY(v_closed) THEN
                    v_closed := v_closed || v_rem_names[v_i];
                END IF;
            END LOOP;
        END IF;
        EXIT WHEN cardinality(v_idx) > 0
            AND NOT EXISTS (SELECT 1 FROM unnest(v_rem_names) n WHERE NOT n = ANY(v_closed));
    END LOOP;
    -- Each planned request is granted by the rule an acquire applies, read now.
    FOR v_req IN SELECT e FROM jsonb_array_elements(v_plan) e LOOP
        SELECT w.wake_address, w.host, w.pid, w.proc_start, w.node, w.holder_kind,
               w.holder_id, w.mode, w.lease_seconds, w.created
          INTO v_w FROM waiters w
         WHERE w.waiter_id = v_req->>'w' AND w.expires > p_now
         ORDER BY w.limit_name LIMIT 1;
        CONTINUE WHEN NOT FOUND;
        v_target := jsonb_build_object('w', v_req->>'w', 'addr', v_w.wake_address,
            'host', v_w.host, 'pid', v_w.pid);
        v_wanted := ARRAY(SELECT jsonb_array_elements_text(v_req->'names'));
        v_slots := (v_req->>'slots')::integer;
        v_extra := ARRAY(SELECT n FROM unnest(v_wanted) n WHERE NOT n = ANY(v_locked));
        IF cardinality(v_extra) > 0 THEN
            -- Its other limits are not locked here. Waiting for them out of name
            -- order could deadlock: taken only if free this instant, otherwise
            -- the request is woken to retry by itself (it keeps its place).
            SELECT COALESCE(array_agg(k.name), '{}') INTO v_got FROM (
                SELECT l.name::text AS name FROM limits l WHERE l.name = ANY(v_extra)
                ORDER BY l.name FOR UPDATE SKIP LOCKED) k;
            v_locked := v_locked || v_got;
            IF cardinality(v_got) < cardinality(v_extra) THEN
                v_woken := v_woken || v_target;
                CONTINUE;
            END IF;
        END IF;
        IF v_w.lease_seconds IS NULL THEN
            v_woken := v_woken || v_target;  -- queued by an older version: no lease length
            CONTINUE;
        END IF;
        v_mode := CASE WHEN v_w.mode = 'rate' THEN 'rate' ELSE 'concurrency' END;
        -- core.limits.decide, on the limits as they are now.
        v_invalid := false;
        v_grant := true;
        v_known := '{}';
        v_limited := '{}';
        FOR s IN SELECT * FROM headway_limit_view(v_wanted, (v_req->>'priority')::integer,
                                                  (v_req->>'seq')::bigint, p_now) LOOP
            v_known := v_known || s.name;
            IF s.active THEN
                IF v_slots > s.slot_limit OR (v_mode = 'rate' AND s.decay <= 0) THEN
                    v_invalid := true;
                END IF;
                v_limited := v_limited || s.name;
                IF s.ahead > 0 OR NOT (s.active_slots + v_slots <= s.slot_limit + eps) THEN
                    v_grant := false;
                END IF;
            END IF;
        END LOOP;
        IF v_invalid THEN
            -- It can never be granted as asked: woken, its attempt says why.
            v_woken := v_woken || v_target;
            CONTINUE;
        END IF;
        CONTINUE WHEN NOT v_grant;
        v_waited := greatest(0.0::double precision, p_now - v_w.created);
        v_lease := headway_write_grant(v_req->>'w', v_known, v_limited, v_slots, v_mode,
            v_w.holder_kind, v_w.holder_id, v_w.pid, v_w.host, v_w.proc_start, v_w.node,
            v_w.lease_seconds, p_now, v_waited, NULL);
        IF v_lease IS NOT NULL THEN
            v_expires := p_now + v_w.lease_seconds;
            v_seconds := v_w.lease_seconds;
        ELSE
            v_expires := NULL;
            v_seconds := NULL;
        END IF;
        -- Forgotten with its lease; a grant without one is kept a waiter TTL.
        INSERT INTO handoffs (waiter_id, lease_id, names, slots, mode, lease_seconds,
                              lease_expires, waited, created, expires)
        VALUES (v_req->>'w', v_lease, to_jsonb(v_limited)::text, v_slots, v_mode, v_seconds,
                v_expires, v_waited, p_now, COALESCE(v_expires, p_now + p_waiter_ttl));
        IF cardinality(v_limited) > 0 THEN
            v_grants := v_grants || jsonb_build_array(jsonb_build_object('lease', v_lease,
                'names', to_jsonb(v_limited), 'slots', v_slots, 'kind', v_w.holder_kind,
                'holder', v_w.holder_id, 'pid', v_w.pid, 'host', v_w.host,
                'waited', v_waited));
        END IF;
        v_woken := v_woken || v_target;
        -- Limits beyond p_names whose queue it left: the next there may now go.
        v_left := v_left || ARRAY(SELECT n FROM unnest(v_wanted) n WHERE NOT n = ANY(p_names));
    END LOOP;
    -- Delivered when the transaction commits (store/wakeups_pg.py listens).
    FOR v_target IN SELECT e FROM jsonb_array_elements(v_woken) e LOOP
        IF left(v_target->>'addr', 3) = 'pg:' THEN
            PERFORM pg_notify(substr(v_target->>'addr', 4), v_target->>'w');
        END IF;
    END LOOP;
    IF cardinality(v_left) > 0 THEN
        -- Locked here (the try-locks above), and each pass grants at least one
        -- request, so this ends.
        v_more := headway_hand_off(
            ARRAY(SELECT DISTINCT n COLLATE "C" FROM unnest(v_left) n ORDER BY 1),
            p_now, p_waiter_ttl);
        v_grants := v_grants || (v_more->'grants');
        v_woken := v_woken || (v_more->'woken');
    END IF;
    RETURN jsonb_build_object('grants', v_grants, 'woken', v_woken);
END
$$
"""

#: A release (``Slots.release_slots``), one statement: the lease's limits locked
#: in name order, its rows deleted, its slots given back and handed on.
RELEASE = """
CREATE FUNCTION headway_release(
    p_lease_id text, p_now double precision, p_waiter_ttl double precision
) RETURNS jsonb LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_rows jsonb;
    v_crowded text[];
    v_handed jsonb;
BEGIN
    PERFORM 1 FROM limits l
     WHERE l.name IN (SELECT e.limit_name FROM leases e WHERE e.lease_id = p_lease_id)
     ORDER BY l.name FOR UPDATE;
    WITH gone AS (
        DELETE FROM leases e WHERE e.lease_id = p_lease_id
        RETURNING e.limit_name, e.slots, e.created, e.expires, e.holder_kind, e.holder_id
    ), given AS (
        UPDATE limits l SET active_slots = CASE WHEN l.active_slots > g.slots
                THEN l.active_slots - g.slots ELSE 0 END,
            releases = l.releases + 1,
            total_hold_seconds = l.total_hold_seconds + (p_now - g.created) * g.slots
        FROM gone g WHERE l.name = g.limit_name
        RETURNING l.name
    )
    SELECT jsonb_agg(jsonb_build_array(g.limit_name, g.slots, g.created, g.expires,
                                       g.holder_kind, g.holder_id)),
           array_agg(g.limit_name::text ORDER BY g.limit_name COLLATE "C") FILTER (
               WHERE EXISTS (SELECT 1 FROM waiters w WHERE w.limit_name = g.limit_name))
      INTO v_rows, v_crowded
      FROM gone g;
    IF v_rows IS NULL OR v_crowded IS NULL THEN
        -- Unknown, or nobody waits on its limits: nothing to hand on.
        RETURN jsonb_build_object('released', COALESCE(v_rows, '[]'::jsonb));
    END IF;
    v_handed := headway_hand_off(v_crowded, p_now, p_waiter_ttl);
    RETURN jsonb_build_object('released', v_rows, 'grants', v_handed->'grants',
                              'woken', v_handed->'woken');
END
$$
"""

FUNCTIONS = (DECAYED, LIMIT_VIEW, WRITE_GRANT, HAND_OFF, RELEASE)
#: Dropped in the reverse order of their creation (each uses those before it).
SIGNATURES = (
    "headway_release(text, double precision, double precision)",
    "headway_hand_off(text[], double precision, double precision)",
    "headway_write_grant(text, text[], text[], integer, text, text, text, integer, text,"
    " bigint, text, double precision, double precision, double precision, text)",
    "headway_limit_view(text[], integer, bigint, double precision)",
    "headway_decayed(double precision, double precision, double precision, double precision)",
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for statement in FUNCTIONS:
        # Sent as is: no parameters, so nothing in the bodies is taken for one.
        bind.exec_driver_sql(render(statement))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for signature in SIGNATURES:
        bind.exec_driver_sql(f"DROP FUNCTION IF EXISTS {signature}")
