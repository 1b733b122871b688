//! `firmup sale import FILE`: dates of sale from a sales record, for units
//! already provisioned.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Shown, shown};
use crate::api::{Api, Failure, Outcome};

/// Most rows one import sends (the server's batch limit).
const MAX_ROWS: usize = 1000;

#[derive(Debug, clap::Subcommand)]
pub enum SaleCommand {
    /// Import a CSV file with the header `serial,sale_date,region` (region
    /// may be empty), all or nothing; the warranties then run from the
    /// dates of sale.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

impl SaleCommand {
    pub fn run(self, api: &Api) -> Outcome<Shown> {
        let SaleCommand::Import { file } = self;
        let sales = read_sales(&file)?;
        shown(
            api.post(
                &api.url(&["v1", "admin", "sales"], &[]),
                &json!({ "sales": sales }),
            ),
            |v| {
                format!(
                    "recorded {} sales from {}\n",
                    v["count"].as_u64().unwrap_or(0),
                    file.display()
                )
            },
        )
    }
}

/// The rows of the CSV file as the API's entries. Only the shape is
/// checked here (columns present, at most [`MAX_ROWS`]); the server checks
/// serials and dates and names the entry it refuses.
fn read_sales(file: &std::path::Path) -> Outcome<Vec<Value>> {
    let local = |m: String| Failure::Local(format!("{}: {m}", file.display()));
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(file)
        .map_err(|e| local(e.to_string()))?;
    let headers = reader.headers().map_err(|e| local(e.to_string()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(serial), Some(date)) = (column("serial"), column("sale_date")) else {
        return Err(local(
            "the header must name the columns serial,sale_date (and optionally region)".into(),
        ));
    };
    let region = column("region");
    let mut sales = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| local(format!("line {line}: {e}")))?;
        let field = |c: usize| record.get(c).unwrap_or("").to_string();
        let mut entry = json!({ "serial": field(serial), "sale_date": field(date) });
        if let Some(r) = region.map(field).filter(|r| !r.is_empty()) {
            entry["region"] = json!(r);
        }
        sales.push(entry);
        if sales.len() > MAX_ROWS {
            return Err(local(format!(
                "more than {MAX_ROWS} rows; split the file (each import is all or nothing)"
            )));
        }
    }
    if sales.is_empty() {
        return Err(local("no rows below the header".into()));
    }
    Ok(sales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_entries_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sales.csv");
        std::fs::write(
            &f,
            "serial,sale_date,region\nSN-1,2026-03-01,EU\nSN-2, 2026-04-02 ,\n",
        )
        .unwrap();
        let rows = read_sales(&f).unwrap();
        assert_eq!(
            rows,
            vec![
                json!({ "serial": "SN-1", "sale_date": "2026-03-01", "region": "EU" }),
                json!({ "serial": "SN-2", "sale_date": "2026-04-02" }),
            ]
        );
        std::fs::write(&f, "serial,date\nSN-1,2026-03-01\n").unwrap();
        let e = read_sales(&f).unwrap_err().to_string();
        assert!(e.contains("serial,sale_date"), "{e}");
        std::fs::write(&f, "serial,sale_date\n").unwrap();
        assert!(read_sales(&f).unwrap_err().to_string().contains("no rows"));
    }
}
