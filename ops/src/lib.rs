//! One-off operations over the stored data: moving in from the old Supabase stack
//! ([`migration`], connecting to the old PostgreSQL through [`postgres`]: verified TLS unless
//! told `sslmode=disable`) and re-wrapping every stored data key under another KMS key
//! ([`key_rotation`]). Each runs locally against the emulator (`make migrate`, `make
//! rotate-keys`) and as-is in AWS with the functions' table and key variables.

pub mod key_rotation;
pub mod migration;
pub mod postgres;
