//! Personal data (docs/PRIVACY.md): what an export reads, what an erasure
//! rewrites, what retention prunes, and a dump of every table for the
//! tests that prove an erasure left nothing behind.
//!
//! Rows are read as JSON objects the database builds itself
//! (`row_to_json` on PostgreSQL, `json_object` over the table's columns on
//! SQLite), so an export holds every column of every row, including
//! columns added after this module was written.

use serde_json::Value;
use time::OffsetDateTime;

use super::{Db, Pool, Stamp, Tx};
use crate::domain::privacy::ERASED;

/// The tables of the schema, sorted.
pub async fn tables(db: &Db) -> Result<Vec<String>, super::Error> {
    let mut names: Vec<String> = match db.pool() {
        Pool::Sqlite(p) => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(p)
        .await
        .map_err(super::Error::from)?,
        Pool::Postgres(p) => sqlx::query_scalar(
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .fetch_all(p)
        .await
        .map_err(super::Error::from)?,
    };
    names.sort();
    Ok(names)
}

/// The rows of `table` matching `filter` (SQL over `$1`, `$2`, ... bound
/// to `binds`), each as a JSON object of all its columns. `table` and
/// `filter` are this module's own text, never a client's.
async fn rows(
    db: &Db,
    table: &str,
    filter: &str,
    binds: &[&str],
) -> Result<Vec<Value>, super::Error> {
    let texts: Vec<String> = match db.pool() {
        Pool::Sqlite(p) => {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                    .bind(table)
                    .fetch_all(p)
                    .await
                    .map_err(super::Error::from)?;
            // BLOB columns (signed envelopes) as hex: JSON cannot hold bytes.
            let pairs = columns
                .iter()
                .map(|c| {
                    format!(
                        "'{c}', CASE WHEN typeof(\"{c}\") = 'blob' THEN hex(\"{c}\") ELSE \"{c}\" END"
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT json_object({pairs}) FROM \"{table}\" WHERE {filter}");
            let mut q = sqlx::query_scalar(&sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.fetch_all(p).await.map_err(super::Error::from)?
        }
        Pool::Postgres(p) => {
            let sql =
                format!("SELECT CAST(row_to_json(t) AS TEXT) FROM \"{table}\" t WHERE {filter}");
            let mut q = sqlx::query_scalar(&sql);
            for b in binds {
                q = q.bind(*b);
            }
            q.fetch_all(p).await.map_err(super::Error::from)?
        }
    };
    texts
        .iter()
        .map(|t| {
            serde_json::from_str(t)
                .map_err(|e| super::Error::Malformed(format!("a row of {table} as JSON: {e}")))
        })
        .collect()
}

/// Every row of every table, as JSON text per table: what the erasure
/// tests search for a serial, an email or an address, so that a column
/// added later cannot hide one.
#[doc(hidden)]
pub async fn dump_every_table(db: &Db) -> Result<Vec<(String, Vec<String>)>, super::Error> {
    let mut out = vec![];
    for table in tables(db).await? {
        let rows = rows(db, &table, "1 = 1", &[]).await?;
        out.push((table, rows.iter().map(Value::to_string).collect()));
    }
    Ok(out)
}

/// `text` for a `LIKE` pattern with `\` as the escape character.
fn like_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The audit records about `serial`: on the device, its RMAs or its
/// tokens, by its tokens, or naming it in their details.
const AUDIT_ABOUT: &str = "target = 'device/' || $1 OR target = $1
    OR target IN (SELECT 'rma/' || number FROM rmas WHERE serial = $1)
    OR target IN (SELECT 'token/' || id FROM tokens WHERE serial = $1)
    OR actor_id IN (SELECT id FROM tokens WHERE serial = $1)
    OR detail LIKE $2 ESCAPE '\\'";

/// Everything held about one unit, table by table (the caller shapes the
/// document). Token hashes are left out: they are secrets, not data about
/// the owner.
pub async fn export_device(
    db: &Db,
    serial: &str,
) -> Result<Vec<(&'static str, Vec<Value>)>, super::Error> {
    let quoted = format!("%{}%", like_escaped(&format!("\"{serial}\"")));
    let by_serial = "serial = $1";
    let of_rmas = "rma IN (SELECT number FROM rmas WHERE serial = $1)";
    let parts: [(&'static str, &'static str, &str); 15] = [
        ("device", "devices", by_serial),
        ("tags", "device_tags", by_serial),
        ("groups", "device_group_members", by_serial),
        ("licences", "licences", by_serial),
        ("contracts", "contracts", by_serial),
        ("repair_pushes", "repair_pushes", by_serial),
        ("rmas", "rmas", by_serial),
        ("rma_events", "rma_events", of_rmas),
        ("rma_attachments", "rma_attachments", of_rmas),
        ("part_replacements", "part_replacements", by_serial),
        ("reports", "reports", by_serial),
        ("update_choices", "update_choices", by_serial),
        ("tokens", "tokens", by_serial),
        (
            "replacement_links",
            "devices",
            "replaces = $1 OR replaced_by = $1",
        ),
        ("audit", "audit_log", AUDIT_ABOUT),
    ];
    let mut out = vec![];
    for (name, table, filter) in parts {
        let binds: &[&str] = if name == "audit" {
            &[serial, &quoted]
        } else {
            &[serial]
        };
        let mut found = rows(db, table, filter, binds).await?;
        if table == "tokens" {
            for row in &mut found {
                if let Some(o) = row.as_object_mut() {
                    o.remove("token_hash");
                }
            }
        }
        out.push((name, found));
    }
    Ok(out)
}

/// The serials of the units whose RMAs name `email` as the customer's
/// (compared without case).
pub async fn serials_of_owner(db: &Db, email: &str) -> Result<Vec<String>, super::Error> {
    on!(db, conn => sqlx::query_scalar(
        "SELECT DISTINCT serial FROM rmas WHERE lower(customer_email) = lower($1) ORDER BY serial",
    )
    .bind(email)
    .fetch_all(conn)
    .await)
}

/// When the unit with this pseudonym was erased, if it was.
pub async fn erased_at(
    exec: impl Into<super::Exec<'_>>,
    pseudonym: &str,
) -> Result<Option<OffsetDateTime>, super::Error> {
    on!(exec, conn => sqlx::query_scalar("SELECT erased_at FROM erasures WHERE pseudonym = $1")
        .bind(pseudonym)
        .fetch_optional(conn)
        .await)
}

/// What an erasure needs to know before it starts: the units this one
/// replaced or was replaced by, and its owners' contact details.
#[derive(Debug, Default)]
pub struct ErasurePlan {
    /// The serial of the unit it replaced, if any.
    pub replaces: Option<String>,
    /// The serial of the unit that replaced it, if any.
    pub replaced_by: Option<String>,
    /// Names, emails and phone numbers on its RMAs, to remove wherever they
    /// were copied (RMA events, audit details).
    pub contact: Vec<String>,
    /// RMAs of the unit not closed or cancelled.
    pub open_rmas: Vec<String>,
    /// The unit's tokens.
    pub token_ids: Vec<String>,
}

/// Reads the [`ErasurePlan`] of `serial` in the erasure's transaction.
pub async fn plan(tx: &mut Tx, serial: &str) -> Result<ErasurePlan, super::Error> {
    let links: Option<(Option<String>, Option<String>)> = on!(&mut *tx, conn => sqlx::query_as(
        "SELECT replaces, replaced_by FROM devices WHERE serial = $1",
    )
    .bind(serial)
    .fetch_optional(conn)
    .await)?;
    let (replaces, replaced_by) = links.unwrap_or_default();
    let contacts: Vec<(String, String, Option<String>, String, String)> = on!(&mut *tx, conn => sqlx::query_as(
        "SELECT customer_name, customer_email, customer_phone, state, number FROM rmas WHERE serial = $1",
    )
    .bind(serial)
    .fetch_all(conn)
    .await)?;
    let mut contact = vec![];
    let mut open_rmas = vec![];
    for (name, email, phone, state, number) in contacts {
        contact.extend([name, email]);
        contact.extend(phone);
        if !matches!(state.as_str(), "closed" | "cancelled") {
            open_rmas.push(number);
        }
    }
    // Empty and erased values are nothing to look for.
    contact.retain(|c| c.trim().chars().count() >= 3 && c != ERASED);
    contact.sort();
    contact.dedup();
    let token_ids: Vec<String> = on!(&mut *tx, conn => sqlx::query_scalar(
        "SELECT id FROM tokens WHERE serial = $1 ORDER BY id",
    )
    .bind(serial)
    .fetch_all(conn)
    .await)?;
    Ok(ErasurePlan {
        replaces,
        replaced_by,
        contact,
        open_rmas,
        token_ids,
    })
}

/// Runs `sql` with string parameters in `tx`; returns the rows changed.
async fn run(tx: &mut Tx, sql: &str, binds: &[&str]) -> Result<u64, super::Error> {
    on!(&mut *tx, conn => {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(conn).await.map(|r| r.rows_affected())
    })
}

/// What an erasure changed, for its answer and its audit record.
#[derive(Debug, Default, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// Tokens of the unit revoked now (earlier revocations not counted).
    pub tokens_revoked: u64,
    /// RMAs whose customer contact, fault text and tracking were removed.
    pub rmas: u64,
    /// Files attached to those RMAs, deleted.
    pub attachments_deleted: u64,
    /// Reports kept under the pseudonym.
    pub reports: u64,
    /// Audit records rewritten to the pseudonym.
    pub audit_records: u64,
}

/// Erases `serial` in `tx`: its row moves to `pseudonym` without its
/// registration and verification code; every table's copy of the serial
/// becomes the pseudonym; the contact details in `plan` are removed from
/// RMAs, their events and audit details; its tokens are revoked; its RMA
/// files' rows are deleted (their sha256s are returned, to delete the
/// bytes once committed). `replaces_p` and `replaced_by_p` are the
/// pseudonyms of the linked units.
#[allow(clippy::too_many_arguments)]
pub async fn erase(
    tx: &mut Tx,
    serial: &str,
    pseudonym: &str,
    plan: &ErasurePlan,
    linked: (Option<String>, Option<String>),
    now: OffsetDateTime,
    erased_by: &str,
    reason: &str,
) -> Result<(Erased, Vec<String>), super::Error> {
    let (s, p) = (serial, pseudonym);
    let mut erased = Erased::default();
    // A copy under the pseudonym first, so that the rows pointing at the
    // unit can move to it before the original goes (no foreign key is
    // broken at any point, on either database).
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO devices (serial, model_id, hw_id, channel, current_version,
             security_counter, root_version, registered_at, created_at, first_seen, last_seen,
             sale_date, region, replaces, replacement_start, replaced_by, replaced_on,
             verification_hash, offered_release_id, offered_at, restricted_at)
         SELECT $2, model_id, hw_id, channel, current_version, security_counter,
             root_version, NULL, created_at, first_seen, last_seen, sale_date, region,
             $3, replacement_start, $4, replaced_on, NULL, offered_release_id, offered_at,
             restricted_at
         FROM devices WHERE serial = $1",
    )
    .bind(s)
    .bind(p)
    .bind(&linked.0)
    .bind(&linked.1)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    let attachments: Vec<String> = on!(&mut *tx, conn => sqlx::query_scalar(
        "SELECT sha256 FROM rma_attachments
         WHERE rma IN (SELECT number FROM rmas WHERE serial = $1)",
    )
    .bind(s)
    .fetch_all(conn)
    .await)?;
    for table in [
        "licences",
        "contracts",
        "repair_pushes",
        "rmas",
        "part_replacements",
        "device_group_members",
        "device_tags",
        "reports",
        "update_choices",
        "tokens",
    ] {
        let n = run(
            tx,
            &format!("UPDATE {table} SET serial = $2 WHERE serial = $1"),
            &[s, p],
        )
        .await?;
        match table {
            "rmas" => erased.rmas = n,
            "reports" => erased.reports = n,
            _ => {}
        }
    }
    run(
        tx,
        "UPDATE devices SET replaces = $2 WHERE replaces = $1",
        &[s, p],
    )
    .await?;
    run(
        tx,
        "UPDATE devices SET replaced_by = $2 WHERE replaced_by = $1",
        &[s, p],
    )
    .await?;
    run(tx, "DELETE FROM devices WHERE serial = $1", &[s]).await?;
    erased.tokens_revoked = on!(&mut *tx, conn => sqlx::query(
        "UPDATE tokens SET revoked_at = $2 WHERE serial = $1 AND revoked_at IS NULL",
    )
    .bind(p)
    .bind(Stamp(now))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    run(
        tx,
        "UPDATE tokens SET label = REPLACE(label, $1, $2) WHERE serial = $2",
        &[s, p],
    )
    .await?;
    // The RMAs stay (repair statistics, warranty decisions), without the
    // customer: name, email, phone, their words and the parcels' numbers.
    run(
        tx,
        "UPDATE rmas SET customer_name = $2, customer_email = $2, customer_phone = NULL,
             fault = $2, tracking_in = NULL, tracking_out = NULL,
             coverage = REPLACE(coverage, $3, $1)
         WHERE serial = $1",
        &[p, ERASED, s],
    )
    .await?;
    let of_rmas = "rma IN (SELECT number FROM rmas WHERE serial = $1)";
    erased.attachments_deleted = run(
        tx,
        &format!("DELETE FROM rma_attachments WHERE {of_rmas}"),
        &[p],
    )
    .await?;
    // File names may name people; the event keeps that a file was added.
    run(
        tx,
        &format!("UPDATE rma_events SET detail = '{{}}' WHERE kind = 'attachment' AND {of_rmas}"),
        &[p],
    )
    .await?;
    run(
        tx,
        &format!(
            "UPDATE rma_events SET detail = REPLACE(detail, $2, $1), actor = REPLACE(actor, $2, $1)
             WHERE {of_rmas}"
        ),
        &[p, s],
    )
    .await?;
    run(
        tx,
        "UPDATE reports SET detail = REPLACE(detail, $2, $1) WHERE serial = $1 AND detail IS NOT NULL",
        &[p, s],
    )
    .await?;
    // The audit trail stays whole: its records about the unit name the
    // pseudonym, and details that quoted the serial quote the pseudonym.
    run(
        tx,
        "UPDATE audit_log SET target = 'device/' || $2 WHERE target = 'device/' || $1",
        &[s, p],
    )
    .await?;
    run(
        tx,
        "UPDATE audit_log SET target = $2 WHERE target = $1",
        &[s, p],
    )
    .await?;
    let about = "target = 'device/' || $1 OR target = $1
        OR target IN (SELECT 'rma/' || number FROM rmas WHERE serial = $1)
        OR target IN (SELECT 'token/' || id FROM tokens WHERE serial = $1)
        OR actor_id IN (SELECT id FROM tokens WHERE serial = $1)";
    erased.audit_records = run(
        tx,
        &format!(
            "UPDATE audit_log SET detail = REPLACE(detail, $2, $1),
                 actor_label = REPLACE(actor_label, $2, $1)
             WHERE {about}"
        ),
        &[p, s],
    )
    .await?;
    let quoted_s = format!("\"{s}\"");
    let quoted_p = format!("\"{p}\"");
    erased.audit_records += run(
        tx,
        "UPDATE audit_log SET detail = REPLACE(detail, $1, $2) WHERE detail LIKE $3 ESCAPE '\\'",
        &[
            &quoted_s,
            &quoted_p,
            &format!("%{}%", like_escaped(&quoted_s)),
        ],
    )
    .await?;
    for value in &plan.contact {
        let pattern = format!("%{}%", like_escaped(value));
        run(
            tx,
            &format!(
                "UPDATE rma_events SET detail = REPLACE(detail, $2, $3)
                 WHERE detail LIKE $4 ESCAPE '\\' AND {of_rmas}"
            ),
            &[p, value, ERASED, &pattern],
        )
        .await?;
        run(
            tx,
            &format!(
                "UPDATE audit_log SET detail = REPLACE(detail, $2, $3)
                 WHERE detail LIKE $4 ESCAPE '\\' AND ({about})"
            ),
            &[p, value, ERASED, &pattern],
        )
        .await?;
    }
    // Other replicas learn of the revoked tokens by their ids; the device
    // entries of the invalidation log name the serial and go.
    run(
        tx,
        "DELETE FROM cache_invalidations WHERE kind = 'device' AND key = $1",
        &[s],
    )
    .await?;
    for id in &plan.token_ids {
        super::invalidations::record(tx, super::invalidations::Kind::Token, id).await?;
    }
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO erasures (pseudonym, erased_at, erased_by, reason) VALUES ($1, $2, $3, $4)",
    )
    .bind(p)
    .bind(Stamp(now))
    .bind(erased_by)
    .bind(reason.replace(s, p))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok((erased, attachments))
}

/// Whether any attachment row still names the file `sha256` (files are
/// stored by content, so two RMAs may share one).
pub async fn attachment_in_use(db: &Db, sha256: &str) -> Result<bool, super::Error> {
    let n: i64 = on!(db, conn => sqlx::query_scalar(
        "SELECT COUNT(*) FROM rma_attachments WHERE sha256 = $1",
    )
    .bind(sha256)
    .fetch_one(conn)
    .await)?;
    Ok(n > 0)
}

/// Restricts processing for `serial` (`restricted`), or lifts it; false
/// when there is no such unit.
pub async fn set_restricted(
    tx: &mut Tx,
    serial: &str,
    restricted: Option<OffsetDateTime>,
) -> Result<bool, super::Error> {
    let n = on!(&mut *tx, conn => sqlx::query("UPDATE devices SET restricted_at = $1 WHERE serial = $2")
        .bind(restricted.map(Stamp))
        .bind(serial)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Whether processing is restricted for `serial`; `None` for no such unit.
pub async fn restricted_at(
    exec: impl Into<super::Exec<'_>>,
    serial: &str,
) -> Result<Option<Option<OffsetDateTime>>, super::Error> {
    let row: Option<(Option<OffsetDateTime>,)> = on!(exec, conn => sqlx::query_as(
        "SELECT restricted_at FROM devices WHERE serial = $1",
    )
    .bind(serial)
    .fetch_optional(conn)
    .await)?;
    Ok(row.map(|(at,)| at))
}

/// A corrected customer contact.
#[derive(Debug, Clone)]
pub struct Contact<'a> {
    /// Name.
    pub name: &'a str,
    /// Email.
    pub email: &'a str,
    /// Phone, if any.
    pub phone: Option<&'a str>,
}

/// Corrects the customer contact on every RMA of `serial`; returns how
/// many RMAs changed.
pub async fn rectify_contact(
    tx: &mut Tx,
    serial: &str,
    c: &Contact<'_>,
) -> Result<u64, super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "UPDATE rmas SET customer_name = $1, customer_email = $2, customer_phone = $3
         WHERE serial = $4",
    )
    .bind(c.name)
    .bind(c.email)
    .bind(c.phone)
    .bind(serial)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))
}

/// What one retention pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Pruned {
    /// Reports deleted.
    pub reports: u64,
    /// Devices whose check-in record was cleared.
    pub check_ins: u64,
    /// Audit records whose details were removed.
    pub audit_details: u64,
    /// RMAs whose customer contact and fault text were removed.
    pub rma_contacts: u64,
}

/// Prunes what is older than each cutoff (`None`: kept for ever), in one
/// transaction.
pub async fn prune(
    db: &Db,
    reports_before: Option<OffsetDateTime>,
    check_ins_before: Option<OffsetDateTime>,
    audit_details_before: Option<OffsetDateTime>,
    rma_contacts_before: Option<OffsetDateTime>,
) -> Result<Pruned, super::Error> {
    let mut tx = db.begin().await?;
    let mut pruned = Pruned::default();
    if let Some(at) = reports_before {
        pruned.reports = before(&mut tx, "DELETE FROM reports WHERE at < $1", at).await?;
    }
    if let Some(at) = check_ins_before {
        pruned.check_ins = before(
            &mut tx,
            "UPDATE devices SET first_seen = NULL, last_seen = NULL, offered_release_id = NULL,
                 offered_at = NULL
             WHERE last_seen < $1",
            at,
        )
        .await?;
    }
    if let Some(at) = audit_details_before {
        pruned.audit_details = before(
            &mut tx,
            "UPDATE audit_log SET detail = '{}' WHERE at < $1 AND detail <> '{}'",
            at,
        )
        .await?;
    }
    if let Some(at) = rma_contacts_before {
        pruned.rma_contacts = on!(&mut tx, conn => sqlx::query(
            "UPDATE rmas SET customer_name = $2, customer_email = $2, customer_phone = NULL,
                 fault = $2, tracking_in = NULL, tracking_out = NULL
             WHERE state IN ('closed', 'cancelled') AND updated_at < $1
               AND customer_email <> $2",
        )
        .bind(Stamp(at))
        .bind(ERASED)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    }
    tx.commit().await?;
    Ok(pruned)
}

/// Runs `sql`, whose one parameter is a time, in `tx`.
async fn before(tx: &mut Tx, sql: &'static str, at: OffsetDateTime) -> Result<u64, super::Error> {
    on!(&mut *tx, conn => sqlx::query(sql)
        .bind(Stamp(at))
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))
}
