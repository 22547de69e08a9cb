"""PostgreSQL: an acquire (grant, take a handed grant, or queue) as one server-side function

After 0010 a contended release was one statement, but the acquires it waited
for were not: queuing a request took eight round trips under the limit's row
lock, and a woken waiter took the lock again only to pick up its grant.
``headway_acquire`` does an acquire's whole work in one statement, in the
order ``Slots.acquire_slots`` does it: a grant handed to the request is taken
first, without any limit's lock (``headway_take``, also a waiter's cheap look);
then the one-statement grant of an uncontended request; then, under the
limits' locks in name order, the decision (``core.limits.decide``), a lazy
reap of expired holders and waiters (and of those whose process this server
found gone), the grant with its handoff, or the request queued or its place
kept. It answers in JSON with what the caller needs to record events and to
word a wait the way ``decide`` does. What it cannot do in the database it
leaves to the caller before writing anything: a task run whose run has ended
(refused, by the Python path), a request that can never be granted or names an
unknown limit with ``strict`` (the Python path raises), and judging whether a
holder's process is alive (it answers with the rows to judge; the caller asks
again naming the dead).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14
"""

from __future__ import annotations

from alembic import op

#: The constants of ``core`` the functions are written with (see 0010): a test
#: checks that ``core`` still has them.
EPSILON = 1e-9  # core.limits.EPSILON
NOT_QUEUED = 2**62  # core.limits.NOT_QUEUED
#: A task run in one of these states, or whose flow run is in one of the
#: second, is refused slots (store/slots/run_waits.py).
FINAL_STATES = ("CANCELLED", "COMPLETED", "CRASHED", "FAILED")
NO_NEW_GRANTS = ("CANCELLED", "CANCELLING", "COMPLETED", "CRASHED", "FAILED")


def render(statement: str) -> str:
    """``statement`` with this revision's constants written in."""
    return (
        statement.replace("@EPSILON@", repr(EPSILON))
        .replace("@NOT_QUEUED@", str(NOT_QUEUED))
        .replace("@FINAL_STATES@", "{" + ",".join(FINAL_STATES) + "}")
        .replace("@NO_NEW_GRANTS@", "{" + ",".join(NO_NEW_GRANTS) + "}")
    )


revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: Take the grant handed to a waiter (``Handoff.take``): None when there is none;
#: ``gone`` when its lease was reaped meanwhile. Deleting the row is what makes
#: it the waiter's: a cancel deleting the same row first gives the slots back.
TAKE = """
CREATE FUNCTION headway_take(p_waiter_id text, p_names text[]) RETURNS jsonb
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_h record;
    v_expires double precision;
BEGIN
    DELETE FROM handoffs h WHERE h.waiter_id = p_waiter_id
    RETURNING h.lease_id, h.names, h.slots, h.mode, h.lease_seconds, h.lease_expires, h.waited
    INTO v_h;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_expires := v_h.lease_expires;
    IF v_h.lease_id IS NOT NULL THEN
        SELECT min(e.expires) INTO v_expires FROM leases e WHERE e.lease_id = v_h.lease_id;
        IF v_expires IS NULL OR v_expires <= 0 THEN
            RETURN jsonb_build_object('status', 'gone');
        END IF;
    END IF;
    RETURN jsonb_build_object('status', 'handed', 'lease', v_h.lease_id,
        'names', v_h.names::jsonb, 'slots', v_h.slots, 'mode', v_h.mode,
        'seconds', v_h.lease_seconds, 'expires', v_expires, 'waited', v_h.waited,
        'limits', COALESCE((SELECT jsonb_agg(jsonb_build_array(l.name, l.active))
                            FROM limits l WHERE l.name = ANY(p_names)), '[]'));
END
$$
"""

#: Remove expired holders and waiters on ``p_names`` (locked), and those named
#: dead (``Reaper.reap``); the caller's own request is kept. Returns the limits
#: whose slots or queue changed.
REAP = """
CREATE FUNCTION headway_reap(
    p_names text[], p_now double precision, p_keep text,
    p_dead_leases text[], p_dead_waiters text[]
) RETURNS text[] LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_changed text[] := '{}';
    v_gone text[];
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT w.waiter_id FROM waiters w
        WHERE w.limit_name = ANY(p_names) AND w.waiter_id IS DISTINCT FROM p_keep
          AND (w.expires <= p_now OR w.waiter_id = ANY(p_dead_waiters))
        ORDER BY w.waiter_id
    LOOP
        -- Only its rows on these (locked) limits: the rest go when theirs are reaped.
        WITH gone AS (
            DELETE FROM waiters w WHERE w.waiter_id = r.waiter_id
                AND w.limit_name = ANY(p_names) RETURNING w.limit_name
        ), counted AS (
            UPDATE limits l SET queued = CASE WHEN l.queued > 0 THEN l.queued - 1 ELSE 0 END
            WHERE l.name IN (SELECT g.limit_name FROM gone g) RETURNING l.name
        )
        SELECT array_agg(g.limit_name::text) INTO v_gone FROM gone g;
        v_changed := v_changed || COALESCE(v_gone, '{}');
    END LOOP;
    FOR r IN
        SELECT e.lease_id, e.limit_name::text AS name, e.slots, e.pid, e.expires,
               e.holder_kind, e.holder_id
        FROM leases e
        WHERE e.limit_name = ANY(p_names)
          AND (e.expires <= p_now OR e.lease_id = ANY(p_dead_leases))
    LOOP
        DELETE FROM leases e WHERE e.lease_id = r.lease_id AND e.limit_name = r.name;
        UPDATE limits l SET active_slots = CASE WHEN l.active_slots > r.slots
                THEN l.active_slots - r.slots ELSE 0 END, expiries = l.expiries + 1
        WHERE l.name = r.name;
        INSERT INTO events (timestamp, kind, run_id, limit_name, slots, seconds, detail)
        VALUES (p_now,
                CASE WHEN r.expires <= p_now THEN 'lease.expired' ELSE 'lease.reaped' END,
                CASE WHEN length(r.holder_id) BETWEEN 1 AND 36 THEN r.holder_id END,
                r.name, r.slots, NULL,
                format('lease=%s holder=%s:%s pid=%s (%s)', r.lease_id, r.holder_kind,
                       COALESCE(NULLIF(r.holder_id, ''), '-'), r.pid,
                       CASE WHEN r.expires <= p_now THEN 'expired'
                            ELSE 'holder process is gone' END));
        -- Its rows on other limits are doomed: whoever next touches those reaps them.
        UPDATE leases e SET expires = 0 WHERE e.lease_id = r.lease_id;
        v_changed := v_changed || r.name;
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT n COLLATE "C" FROM unnest(v_changed) n ORDER BY 1);
END
$$
"""

#: ``core.limits.decide`` on the limits named, read in one snapshot (STABLE: the
#: caller's statement's), with what the caller needs of it: the limits as they
#: were decided on (to word a wait), which are limited, and whether any has an
#: expired holder or waiter (other than ``p_keep``) that a reap would remove.
DECIDE = """
CREATE FUNCTION headway_decide(
    p_names text[], p_occupy integer, p_mode text, p_priority integer, p_seq bigint,
    p_now double precision, p_keep text,
    OUT grant_now boolean, OUT invalid boolean, OUT unknown boolean, OUT stale boolean,
    OUT known text[], OUT limited text[], OUT states jsonb, OUT limits jsonb
) LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    eps constant double precision := @EPSILON@;  -- core.limits.EPSILON
    s record;
BEGIN
    grant_now := true;
    invalid := false;
    stale := false;
    known := '{}';
    limited := '{}';
    states := '[]';
    limits := '[]';
    FOR s IN
        SELECT v.*, p_keep IS NOT NULL AND v.active AND (
                   EXISTS (SELECT 1 FROM leases e
                           WHERE e.limit_name = v.name AND e.expires <= p_now)
                   OR EXISTS (SELECT 1 FROM waiters w WHERE w.limit_name = v.name
                              AND w.expires <= p_now AND w.waiter_id <> p_keep)) AS stale
        FROM headway_limit_view(p_names, p_priority, p_seq, p_now) v
    LOOP
        states := states || jsonb_build_array(jsonb_build_array(s.name, s.slot_limit,
            s.active, s.active_slots, s.decay, s.ahead, s.ahead_slots));
        limits := limits || jsonb_build_array(jsonb_build_array(s.name, s.active));
        known := known || s.name;
        stale := stale OR s.stale;
        IF s.active THEN
            IF p_occupy > s.slot_limit OR (p_mode = 'rate' AND s.decay <= 0) THEN
                invalid := true;
            END IF;
            limited := limited || s.name;
            IF s.ahead > 0 OR NOT (s.active_slots + p_occupy <= s.slot_limit + eps) THEN
                grant_now := false;
            END IF;
        END IF;
    END LOOP;
    unknown := cardinality(known) < cardinality(p_names);
END
$$
"""

#: The holders and waiters on ``p_names`` of processes of node ``p_node``, for the
#: caller to judge (``Reaper.judge``): an acquire's ``probe`` answer.
LOCAL_ROWS = """
CREATE FUNCTION headway_local_rows(p_names text[], p_node text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('status', 'probe', 'limited', to_jsonb(p_names),
        'leases', COALESCE((SELECT jsonb_agg(jsonb_build_array(e.lease_id, e.pid, e.proc_start))
                            FROM leases e
                            WHERE e.limit_name = ANY(p_names) AND e.node = p_node), '[]'),
        'waiters', COALESCE((SELECT jsonb_agg(jsonb_build_array(w.waiter_id, w.pid,
                                                                 w.proc_start))
                             FROM waiters w
                             WHERE w.limit_name = ANY(p_names) AND w.node = p_node), '[]'))
$$
"""

#: One attempt to take ``p_occupy`` slots of every limit in ``p_names``
#: (``Slots.acquire_slots``; the names sorted and unique).
ACQUIRE = """
CREATE FUNCTION headway_acquire(
    p_names text[], p_occupy integer, p_mode text, p_priority integer,
    p_kind text, p_holder text, p_pid integer, p_host text, p_node text, p_start bigint,
    p_lease_seconds double precision, p_now double precision, p_waiter_id text,
    p_new_waiter boolean, p_may_queue boolean, p_wake_address text, p_lease_id text,
    p_strict boolean, p_my_node text, p_probe boolean,
    p_dead_leases text[], p_dead_waiters text[], p_waiter_ttl double precision
) RETURNS jsonb LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    eps constant double precision := @EPSILON@;  -- core.limits.EPSILON
    not_queued constant bigint := @NOT_QUEUED@;  -- core.limits.NOT_QUEUED
    v_taken jsonb;
    v_seq bigint := not_queued;
    v_since double precision := p_now;
    v_queued_on text[] := '{}';
    d record;
    v_freed text[] := '{}';
    v_handed jsonb;
    v_lease text;
    v_missing text[];
    v_waited double precision;
BEGIN
    IF p_kind = 'task_run' AND COALESCE(p_holder, '') <> '' AND EXISTS (
        SELECT 1 FROM task_runs t LEFT JOIN flow_runs f ON f.id = t.flow_run_id
        WHERE t.id = p_holder AND (t.state_type = ANY('@FINAL_STATES@'::text[])
                                   OR f.state_type = ANY('@NO_NEW_GRANTS@'::text[]))
    ) THEN
        RETURN jsonb_build_object('status', 'fallback');  -- refused, by the Python path
    END IF;
    IF NOT p_new_waiter THEN
        -- Handed the slots by whoever freed them: take the grant, nothing more.
        v_taken := headway_take(p_waiter_id, p_names);
        IF v_taken IS NOT NULL THEN
            RETURN v_taken;
        END IF;
    END IF;
    IF p_mode = 'concurrency' AND cardinality(p_names) = 1 AND p_kind = 'code' THEN
        -- The uncontended grant, one statement on the limit's own row: never
        -- for a request handed the slots already (a handoff still in progress
        -- has it queued in this statement's snapshot).
        WITH taken AS (
            UPDATE limits l SET active_slots = l.active_slots + p_occupy,
                grants = l.grants + 1, decayed_at = p_now
            WHERE l.name = p_names[1] AND l.active AND l.slot_decay_per_second = 0
              AND l.queued = 0 AND l.active_slots + p_occupy <= l.slot_limit
              AND NOT EXISTS (SELECT 1 FROM handoffs h WHERE h.waiter_id = p_waiter_id)
            RETURNING l.name
        )
        INSERT INTO leases (lease_id, limit_name, slots, holder_kind, holder_id, pid, host,
                            proc_start, created, expires, node)
        SELECT p_lease_id, t.name, p_occupy, p_kind, p_holder, p_pid, p_host, p_start,
               p_now, p_now + p_lease_seconds, p_node
        FROM taken t;
        IF FOUND THEN
            RETURN jsonb_build_object('status', 'granted', 'lease', p_lease_id,
                'expires', p_now + p_lease_seconds, 'waited', 0.0::double precision,
                'limits', jsonb_build_array(jsonb_build_array(p_names[1], true)));
        END IF;
    END IF;
    IF p_new_waiter AND NOT p_may_queue AND p_dead_leases IS NULL
       AND p_dead_waiters IS NULL THEN
        -- One attempt that will not queue, by a request that holds no place:
        -- when a committed state (this statement's snapshot) denies it and a
        -- reap would change nothing, that is its answer, and taking the locks
        -- (which write, and wait for the disk at commit) would only hold up
        -- those who must write.
        SELECT * INTO d
          FROM headway_decide(p_names, p_occupy, p_mode, p_priority, not_queued, p_now,
                              p_waiter_id);
        IF NOT (d.grant_now OR d.invalid OR d.stale OR (p_strict AND d.unknown)) THEN
            IF p_probe AND p_my_node IS NOT NULL THEN
                -- Unless a holder's process is gone: asked again naming the dead
                -- (then under the locks), or none (then here again).
                RETURN headway_local_rows(d.limited, p_my_node);
            END IF;
            RETURN jsonb_build_object('status', 'wait', 'states', d.states,
                                      'handoff', '{}'::jsonb);
        END IF;
    END IF;
    -- Row locks first, in name order; the statements after this one then see
    -- every request queued, and every grant handed to this one, by whoever
    -- held these locks before.
    PERFORM 1 FROM limits l WHERE l.name = ANY(p_names) ORDER BY l.name FOR UPDATE;
    IF NOT p_new_waiter THEN
        v_taken := headway_take(p_waiter_id, p_names);
        IF v_taken IS NOT NULL THEN
            RETURN v_taken;
        END IF;
        SELECT min(w.seq), min(w.created), COALESCE(array_agg(w.limit_name::text), '{}')
          INTO v_seq, v_since, v_queued_on
          FROM waiters w WHERE w.waiter_id = p_waiter_id;
        IF v_seq IS NULL THEN
            IF NOT p_may_queue THEN
                RETURN jsonb_build_object('status', 'gone');
            END IF;
            v_seq := not_queued;
            v_since := p_now;
        END IF;
    END IF;
    FOR v_pass IN 1..2 LOOP
        -- core.limits.decide, on the limits as they are under the locks.
        SELECT * INTO d
          FROM headway_decide(p_names, p_occupy, p_mode, p_priority, v_seq, p_now, NULL);
        IF d.invalid OR (p_strict AND d.unknown) THEN
            -- Nothing written yet: the Python path raises the error decide words.
            RETURN jsonb_build_object('status', 'fallback');
        END IF;
        EXIT WHEN d.grant_now OR v_pass = 2;
        -- Before waiting, clear the way: expired or dead holders and waiters.
        IF p_probe AND p_my_node IS NOT NULL THEN
            -- Whether their processes live is judged by the caller (it reads
            -- /proc): the rows to judge, and it asks again naming the dead.
            RETURN headway_local_rows(d.limited, p_my_node);
        END IF;
        v_freed := headway_reap(d.limited, p_now, p_waiter_id, COALESCE(p_dead_leases, '{}'),
                                COALESCE(p_dead_waiters, '{}'));
        EXIT WHEN cardinality(v_freed) = 0;
    END LOOP;
    IF d.grant_now THEN
        v_waited := p_now - v_since;
        v_lease := headway_write_grant(
            CASE WHEN v_seq <> not_queued THEN p_waiter_id END, d.known, d.limited, p_occupy,
            p_mode, p_kind, p_holder, p_pid, p_host, p_start, p_node, p_lease_seconds, p_now,
            v_waited, p_lease_id);
        -- A queued request leaving the queue unblocks those behind it, and slots
        -- freed by reaping may be more than this request took.
        v_handed := headway_hand_off(
            ARRAY(SELECT DISTINCT n COLLATE "C" FROM unnest(
                v_freed || CASE WHEN v_seq <> not_queued THEN d.limited ELSE '{}' END) n
                ORDER BY 1),
            p_now, p_waiter_ttl);
        RETURN jsonb_build_object('status', 'granted', 'lease', v_lease,
            'expires', CASE WHEN v_lease IS NOT NULL THEN p_now + p_lease_seconds END,
            'waited', v_waited, 'limits', d.limits, 'handoff', v_handed);
    END IF;
    v_handed := headway_hand_off(v_freed, p_now, p_waiter_ttl);
    IF v_seq = not_queued THEN
        IF NOT p_may_queue THEN
            RETURN jsonb_build_object('status', 'wait', 'states', d.states,
                                      'handoff', v_handed);
        END IF;
        v_missing := d.limited;
        v_since := p_now;
        UPDATE sequences q SET value = q.value + 1 WHERE q.name = 'waiters'
        RETURNING q.value INTO v_seq;
        IF NOT FOUND THEN
            INSERT INTO sequences (name, value) VALUES ('waiters', 0)
            ON CONFLICT (name) DO NOTHING;
            UPDATE sequences q SET value = q.value + 1 WHERE q.name = 'waiters'
            RETURNING q.value INTO v_seq;
        END IF;
    ELSE
        -- The wake address follows the request: a long poll resumed through
        -- another server (or process) is woken there.
        UPDATE waiters w SET expires = p_now + p_waiter_ttl,
            wake_address = COALESCE(p_wake_address, w.wake_address)
        WHERE w.waiter_id = p_waiter_id;
        -- A limit created (or enabled) since the request queued: it keeps its
        -- place there too, so nobody who came later passes it.
        v_missing := ARRAY(SELECT n FROM unnest(d.limited) n WHERE NOT n = ANY(v_queued_on));
    END IF;
    IF cardinality(v_missing) > 0 THEN
        -- The row carries all a lease needs, so a release can grant it directly.
        INSERT INTO waiters (seq, limit_name, waiter_id, slots, priority, holder_kind,
            holder_id, pid, host, proc_start, wake_address, created, expires, node, mode,
            lease_seconds)
        SELECT v_seq, n, p_waiter_id, p_occupy, p_priority, p_kind, p_holder, p_pid, p_host,
               p_start, p_wake_address, v_since, p_now + p_waiter_ttl, p_node, p_mode,
               p_lease_seconds
        FROM unnest(v_missing) n;
        UPDATE limits l SET denials = l.denials + 1, queued = l.queued + 1
        WHERE l.name = ANY(v_missing);
    END IF;
    RETURN jsonb_build_object('status', 'wait', 'states', d.states, 'handoff', v_handed,
        'denied', to_jsonb(v_missing), 'denied_at', v_since);
END
$$
"""

FUNCTIONS = (TAKE, REAP, DECIDE, LOCAL_ROWS, ACQUIRE)
#: Dropped in the reverse order of their creation (each uses those before it).
SIGNATURES = (
    "headway_acquire(text[], integer, text, integer, text, text, integer, text, text, bigint,"
    " double precision, double precision, text, boolean, boolean, text, text, boolean, text,"
    " boolean, text[], text[], double precision)",
    "headway_local_rows(text[], text)",
    "headway_decide(text[], integer, text, integer, bigint, double precision, text)",
    "headway_reap(text[], double precision, text, text[], text[])",
    "headway_take(text, text[])",
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
