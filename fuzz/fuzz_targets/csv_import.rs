//! The device, contract and sales CSV imports: never panic, whatever the
//! bytes.
#![no_main]

use firmup_server::provisioning::{parse_contracts_csv, parse_devices_csv, parse_sales_csv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_devices_csv(data);
    let _ = parse_contracts_csv(data);
    let _ = parse_sales_csv(data);
});
