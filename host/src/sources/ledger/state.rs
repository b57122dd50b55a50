//! The rules that need the ledger's state: no duplicate, inputs exist and
//! are unspent, each input meets its output's condition, assets agree,
//! amounts balance.
//!
//! They are checked against a [`LedgerView`], so the same rules apply to
//! committed state (mode=sync) and to a block being built, where earlier
//! transactions of the block count as committed ([`BlockView`]).

use std::collections::{HashMap, HashSet};

use super::transaction::{Operation, OutputRef, Rejected, Rule, Transaction};
use crate::store::StoreError;

/// What the ledger knows about an output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputState {
    pub amount: u64,
    pub condition_uri: String,
    pub asset_id: String,
    /// The transaction that spent it, if any.
    pub spent_by: Option<String>,
}

/// Read access to the ledger's state.
pub trait LedgerView {
    fn contains(&self, tx_id: &str) -> Result<bool, StoreError>;
    fn output(&self, output: &OutputRef) -> Result<Option<OutputState>, StoreError>;
}

/// A transaction broke a rule, or the state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Rejected(Rejected),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Rejected> for StateError {
    fn from(r: Rejected) -> Self {
        StateError::Rejected(r)
    }
}

/// Checks `tx` against the state `view` shows.
pub fn validate(tx: &Transaction, view: &impl LedgerView) -> Result<(), StateError> {
    if view.contains(&tx.id)? {
        return Err(Rejected::new(
            Rule::DuplicateTransaction,
            format!("transaction `{}` already exists", tx.id),
        )
        .into());
    }
    if tx.operation == Operation::Create {
        return Ok(());
    }
    let mut seen = HashSet::new();
    let mut amount_in: u128 = 0;
    for (i, input) in tx.inputs.iter().enumerate() {
        let Some(spent) = &input.fulfills else {
            continue;
        };
        if !seen.insert(spent) {
            return Err(Rejected::new(
                Rule::DoubleSpend,
                format!("tx \"{}\" spends inputs twice (output {spent})", tx.id),
            )
            .into());
        }
        let Some(output) = view.output(spent)? else {
            return Err(Rejected::new(
                Rule::InputDoesNotExist,
                format!("input {i} spends output {spent}, which does not exist"),
            )
            .into());
        };
        if let Some(spender) = &output.spent_by {
            return Err(Rejected::new(
                Rule::DoubleSpend,
                format!("input {i} spends output {spent}, already spent by transaction {spender}"),
            )
            .into());
        }
        if !tx.asset_ids.contains(&output.asset_id) {
            return Err(Rejected::new(
                Rule::AssetIdMismatch,
                format!(
                    "The asset id of the input does not match the asset id of the transaction: input {i} holds asset {}, the transaction moves {}",
                    output.asset_id,
                    tx.asset_ids.join(", ")
                ),
            )
            .into());
        }
        if input.fulfillment.condition().uri() != output.condition_uri {
            return Err(Rejected::new(
                Rule::InvalidSignature,
                format!("Transaction signature is invalid: input {i} does not meet the condition of output {spent}"),
            )
            .into());
        }
        amount_in += u128::from(output.amount);
    }
    let amount_out: u128 = tx.outputs.iter().map(|o| u128::from(o.amount)).sum();
    if amount_in != amount_out {
        return Err(Rejected::new(
            Rule::AmountError,
            format!(
                "The amount used in the inputs `{amount_in}` needs to be same as the amount used in the outputs `{amount_out}`"
            ),
        )
        .into());
    }
    Ok(())
}

/// The outputs a transaction creates, as state.
pub fn outputs_of(tx: &Transaction) -> impl Iterator<Item = (OutputRef, OutputState)> + '_ {
    tx.outputs.iter().enumerate().map(move |(i, o)| {
        (
            OutputRef {
                transaction_id: tx.id.clone(),
                output_index: i as u32,
            },
            OutputState {
                amount: o.amount,
                condition_uri: o.condition.uri(),
                asset_id: tx.asset_ids[0].clone(),
                spent_by: None,
            },
        )
    })
}

/// A view of `base` with some transactions applied on top: a block being
/// built, or the transactions accepted but not yet committed.
pub struct BlockView<'a, V> {
    base: &'a V,
    ids: HashSet<String>,
    outputs: HashMap<OutputRef, OutputState>,
    spent: HashMap<OutputRef, String>,
}

impl<'a, V: LedgerView> BlockView<'a, V> {
    pub fn new(base: &'a V) -> Self {
        BlockView {
            base,
            ids: HashSet::new(),
            outputs: HashMap::new(),
            spent: HashMap::new(),
        }
    }

    /// Counts `tx` as committed from now on.
    pub fn apply(&mut self, tx: &Transaction) {
        self.ids.insert(tx.id.clone());
        for spent in tx.spends() {
            self.spent.insert(spent.clone(), tx.id.clone());
        }
        self.outputs.extend(outputs_of(tx));
    }

    /// Checks `tx` and, if it is valid, applies it.
    pub fn admit(&mut self, tx: &Transaction) -> Result<(), StateError> {
        validate(tx, self)?;
        self.apply(tx);
        Ok(())
    }
}

impl<V: LedgerView> LedgerView for BlockView<'_, V> {
    fn contains(&self, tx_id: &str) -> Result<bool, StoreError> {
        Ok(self.ids.contains(tx_id) || self.base.contains(tx_id)?)
    }

    fn output(&self, output: &OutputRef) -> Result<Option<OutputState>, StoreError> {
        let mut state = match self.outputs.get(output) {
            Some(state) => Some(state.clone()),
            None => self.base.output(output)?,
        };
        if let (Some(state), Some(spender)) = (&mut state, self.spent.get(output)) {
            state.spent_by = Some(spender.clone());
        }
        Ok(state)
    }
}
