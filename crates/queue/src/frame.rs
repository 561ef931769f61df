//! The byte format of one queue entry: its items as length-prefixed frames.
//!
//! Both backends store a push as a single blob so that a push is one row or one stream
//! entry, however many items it holds. Each item is written as its length (`u32`,
//! little endian) followed by its bytes.

use crate::QueueError;

/// Size of the length prefix of each frame.
const PREFIX: usize = 4;

/// Packs `items` into one blob.
pub(crate) fn encode(items: &[Vec<u8>]) -> Result<Vec<u8>, QueueError> {
    let size = items.iter().map(|i| PREFIX + i.len()).sum();
    let mut blob = Vec::with_capacity(size);
    for item in items {
        let len =
            u32::try_from(item.len()).map_err(|_| QueueError::ItemTooLarge { len: item.len() })?;
        blob.extend_from_slice(&len.to_le_bytes());
        blob.extend_from_slice(item);
    }
    Ok(blob)
}

/// Unpacks a blob written by [`encode`] that is recorded as holding `expected` items.
pub(crate) fn decode(mut blob: &[u8], expected: usize) -> Result<Vec<Vec<u8>>, QueueError> {
    // The count comes from storage too; do not let a damaged one allocate wildly.
    let mut items = Vec::with_capacity(expected.min(blob.len() / PREFIX));
    while !blob.is_empty() {
        let Some((prefix, rest)) = blob.split_first_chunk::<PREFIX>() else {
            return Err(QueueError::Corrupt("truncated item length".into()));
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        if rest.len() < len {
            return Err(QueueError::Corrupt(format!(
                "item of {len} bytes but only {} bytes left",
                rest.len()
            )));
        }
        let (item, rest) = rest.split_at(len);
        items.push(item.to_vec());
        blob = rest;
    }
    if items.len() != expected {
        return Err(QueueError::Corrupt(format!(
            "entry holds {} items, recorded as {expected}",
            items.len()
        )));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_items_and_order() {
        let items = vec![b"a".to_vec(), Vec::new(), vec![0u8; 300], b"last".to_vec()];
        let blob = encode(&items).unwrap();
        assert_eq!(blob.len(), 4 * 4 + 1 + 300 + 4);
        assert_eq!(decode(&blob, 4).unwrap(), items);
    }

    #[test]
    fn damaged_blobs_are_rejected() {
        let blob = encode(&[b"abc".to_vec(), b"de".to_vec()]).unwrap();
        assert!(matches!(decode(&blob, 3), Err(QueueError::Corrupt(_))));
        assert!(matches!(
            decode(&blob[..blob.len() - 1], 2),
            Err(QueueError::Corrupt(_))
        ));
        assert!(matches!(decode(&blob[..2], 0), Err(QueueError::Corrupt(_))));
        assert_eq!(decode(&[], 0).unwrap(), Vec::<Vec<u8>>::new());
    }
}
