//! Padded id batches for the model's forward.

use candle_core::{Device, Tensor};

use crate::error::{Result, RolloutError};

/// Which side the padding goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Left,
    Right,
}

/// `rows` padded with id 0 to their longest length.
///
/// # Shapes
/// → ids (B, T) u32, attention mask (B, T) u32 (1 = real token).
pub(crate) fn pad_rows(rows: &[&[u32]], side: Side, device: &Device) -> Result<(Tensor, Tensor)> {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    if rows.is_empty() || t == 0 {
        return Err(RolloutError::InvalidInput(
            "cannot build an empty batch".into(),
        ));
    }
    let mut ids = Vec::with_capacity(rows.len() * t);
    let mut mask = Vec::with_capacity(rows.len() * t);
    for r in rows {
        let pad = t - r.len();
        if side == Side::Left {
            ids.extend(std::iter::repeat_n(0, pad));
            mask.extend(std::iter::repeat_n(0, pad));
        }
        ids.extend_from_slice(r);
        mask.extend(std::iter::repeat_n(1u32, r.len()));
        if side == Side::Right {
            ids.extend(std::iter::repeat_n(0, pad));
            mask.extend(std::iter::repeat_n(0, pad));
        }
    }
    let b = rows.len();
    Ok((
        Tensor::from_vec(ids, (b, t), device)?,
        Tensor::from_vec(mask, (b, t), device)?,
    ))
}

/// Each prompt's row index repeated `group_size` times: `[0, 0, 1, 1]` for 2 prompts, G = 2.
pub(crate) fn owners(prompts: usize, group_size: usize) -> Vec<u32> {
    (0..prompts as u32)
        .flat_map(|p| std::iter::repeat_n(p, group_size))
        .collect()
}

/// Errors unless every id is below `vocab`.
pub(crate) fn check_ids(what: &str, rows: &[Vec<u32>], vocab: usize) -> Result<()> {
    for (i, r) in rows.iter().enumerate() {
        if let Some(&bad) = r.iter().find(|&&id| id as usize >= vocab) {
            return Err(RolloutError::InvalidInput(format!(
                "{what} {i} has token id {bad}, outside the model's vocab ({vocab})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_left_and_right() -> Result<()> {
        let rows: [&[u32]; 2] = [&[5, 6, 7], &[8]];
        let (ids, mask) = pad_rows(&rows, Side::Left, &Device::Cpu)?;
        assert_eq!(ids.to_vec2::<u32>()?, vec![vec![5, 6, 7], vec![0, 0, 8]]);
        assert_eq!(mask.to_vec2::<u32>()?, vec![vec![1, 1, 1], vec![0, 0, 1]]);
        let (ids, mask) = pad_rows(&rows, Side::Right, &Device::Cpu)?;
        assert_eq!(ids.to_vec2::<u32>()?, vec![vec![5, 6, 7], vec![8, 0, 0]]);
        assert_eq!(mask.to_vec2::<u32>()?, vec![vec![1, 1, 1], vec![1, 0, 0]]);
        assert!(pad_rows(&[], Side::Left, &Device::Cpu).is_err());
        assert_eq!(owners(2, 3), vec![0, 0, 0, 1, 1, 1]);
        Ok(())
    }
}
