//! Embedded Amazon States Language (AWS Step Functions) interpreter: runs any ASL definition on one machine, durably.
