"""S5-S10 as set-based SQL: which (account, resource) pairs of one master are shared, and
why the others are not. One definition serves the recalculation (S11), the limit check
(S8) and the detail view (S10).

Per trusteeship member exactly one mode applies: a member whose group has resources
shared with it uses those (S5, S7); any other member uses what the account settings give
(S6). S8 keeps, per resource type, the first 100 members (by account id) who would share
resources of that type; the rest are LIMIT_REACHED.
"""

from __future__ import annotations

from sqlalchemy import text

SHARING_LIMIT = 100

# The common part: :master's enterprise and who would share which type.
_BASE = """
members AS (
  SELECT member_id AS account_id, type AS link_type FROM links
  WHERE master_id = :master AND status = 'ACTIVE'),
trustees AS (SELECT account_id FROM members WHERE link_type = 'TRUSTEESHIP'),
master_resources AS (SELECT id, type FROM resources WHERE owner_id = :master),
group_of AS (
  SELECT gm.member_id, gm.group_id FROM user_group_members gm
  JOIN user_groups g ON g.id = gm.group_id AND g.master_id = :master
  JOIN trustees t ON t.account_id = gm.member_id),
busy_groups AS (
  SELECT DISTINCT rg.group_id FROM resource_groups rg
  JOIN master_resources r ON r.id = rg.resource_id),
restricted AS (
  SELECT DISTINCT rg.resource_id FROM resource_groups rg
  JOIN master_resources r ON r.id = rg.resource_id),
by_group AS (
  SELECT gof.member_id AS account_id, r.id AS resource_id, r.type
  FROM group_of gof
  JOIN resource_groups rg ON rg.group_id = gof.group_id
  JOIN master_resources r ON r.id = rg.resource_id),
setting_types AS (
  SELECT t.account_id, a.type FROM trustees t
  JOIN accepted_resource_types a ON a.member_id = t.account_id
  JOIN shared_resource_types s ON s.master_id = :master AND s.type = a.type
  -- NOT IN over a set (a hashed subplan), not a correlated NOT EXISTS: the rows of CTE
  -- scans are guesses, and PostgreSQL 15 ran that as a nested loop (2,000 x 900 rows).
  WHERE t.account_id NOT IN (
    SELECT gof.member_id FROM group_of gof JOIN busy_groups b ON b.group_id = gof.group_id)),
member_types AS (
  SELECT DISTINCT account_id, type FROM by_group
  UNION
  SELECT st.account_id, st.type FROM setting_types st
  WHERE EXISTS (SELECT 1 FROM master_resources r
                WHERE r.type = st.type AND r.id NOT IN (SELECT resource_id FROM restricted))),
allowed AS (
  SELECT account_id, type FROM (
    SELECT account_id, type,
           row_number() OVER (PARTITION BY type ORDER BY account_id) AS position
    FROM member_types) ranked
  WHERE position <= :limit)
"""

GRANTS = text(f"""
WITH {_BASE}
SELECT b.account_id, b.resource_id, 'USER_GROUP' AS reason FROM by_group b
JOIN allowed al ON al.account_id = b.account_id AND al.type = b.type
UNION ALL
SELECT st.account_id, r.id, 'ACCOUNT_SETTING' FROM setting_types st
JOIN allowed al ON al.account_id = st.account_id AND al.type = st.type
JOIN master_resources r ON r.type = st.type
WHERE r.id NOT IN (SELECT resource_id FROM restricted)
UNION ALL
SELECT r.owner_id, r.id, 'OWNER' FROM resources r
WHERE r.owner_id IN (SELECT account_id FROM members)
   -- an account that is a member now has no enterprise of its own: its master's has it
   OR (r.owner_id = :master AND NOT EXISTS (
         SELECT 1 FROM links WHERE member_id = :master AND status = 'ACTIVE'))
""").bindparams(limit=SHARING_LIMIT)

MEMBERS_PER_TYPE = text(f"""
WITH {_BASE}
SELECT type, count(*) AS members FROM member_types GROUP BY type
""")

# S10: every pair of the enterprise's accounts (master and ACTIVE members) with the
# master's resources, plus each member's own resources, with the reason it is shared or
# not. ``shared`` and ``since`` come from the stored result of the last recalculation.
DETAILS = f"""
WITH {_BASE},
accounts_of AS (SELECT CAST(:master AS bigint) AS account_id UNION ALL
                SELECT account_id FROM members),
pairs AS (
  SELECT a.account_id, r.id AS resource_id, r.type FROM accounts_of a
  CROSS JOIN master_resources r
  UNION ALL
  SELECT r.owner_id, r.id, r.type FROM resources r
  WHERE r.owner_id IN (SELECT account_id FROM members)),
explained AS (
  SELECT p.account_id, p.resource_id, CASE
    WHEN p.account_id = :master
      OR EXISTS (SELECT 1 FROM resources o WHERE o.id = p.resource_id
                 AND o.owner_id = p.account_id) THEN 'OWNER'
    WHEN p.account_id NOT IN (SELECT account_id FROM trustees) THEN 'NOT_TRUSTEESHIP'
    WHEN p.resource_id IN (SELECT resource_id FROM restricted) THEN CASE
      WHEN NOT EXISTS (SELECT 1 FROM by_group b WHERE b.account_id = p.account_id
                       AND b.resource_id = p.resource_id) THEN 'RESTRICTED_TO_GROUPS'
      WHEN EXISTS (SELECT 1 FROM allowed al WHERE al.account_id = p.account_id
                   AND al.type = p.type) THEN 'USER_GROUP'
      ELSE 'LIMIT_REACHED' END
    WHEN NOT EXISTS (SELECT 1 FROM shared_resource_types s WHERE s.master_id = :master
                     AND s.type = p.type) THEN 'TYPE_NOT_SHARED'
    WHEN NOT EXISTS (SELECT 1 FROM accepted_resource_types a
                     WHERE a.member_id = p.account_id AND a.type = p.type)
      THEN 'TYPE_NOT_ACCEPTED'
    WHEN NOT EXISTS (SELECT 1 FROM setting_types st WHERE st.account_id = p.account_id
                     AND st.type = p.type) THEN 'GROUP_HAS_RESOURCES'
    WHEN NOT EXISTS (SELECT 1 FROM allowed al WHERE al.account_id = p.account_id
                     AND al.type = p.type) THEN 'LIMIT_REACHED'
    ELSE 'ACCOUNT_SETTING' END AS live_reason
  FROM pairs p)
SELECT e.account_id, e.resource_id, g.reason IS NOT NULL AS shared,
       coalesce(g.reason, e.live_reason) AS reason, g.since
FROM explained e
LEFT JOIN sharing_grants g ON g.master_id = :master AND g.account_id = e.account_id
  AND g.resource_id = e.resource_id
"""
