//! The "attach" pattern (candle.md): a result computed without a graph is attached to its
//! inputs by a custom op whose forward only hands back the precomputed storage (on the CPU or
//! a CUDA device) and whose backward is a closure over ordinary tensor ops.

use std::sync::Mutex;

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{
    bail, CpuStorage, CudaStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Storage,
    Tensor,
};

/// Holds a precomputed result until the custom op's forward moves it into the graph. Taking
/// it (rather than keeping it in the op) avoids holding two copies alive for the backward.
struct Stash(Mutex<Option<Tensor>>);

impl Stash {
    fn take(&self) -> Result<Tensor> {
        let mut guard = self
            .0
            .lock()
            .map_err(|_| candle_core::Error::Msg("attach op: poisoned lock".into()))?;
        guard.take().ok_or_else(|| {
            candle_core::Error::Msg("attach op: forward ran twice on one result".into())
        })
    }

    fn cpu(&self) -> Result<(CpuStorage, Shape)> {
        let y = self.take()?;
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => clone_storage(s, layout),
            _ => bail!("attach op: the precomputed result is not on the CPU"),
        }
    }

    fn cuda(&self) -> Result<(CudaStorage, Shape)> {
        let y = self.take()?;
        let (storage, layout) = y.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => clone_storage(s, layout),
            _ => bail!("attach op: the precomputed result is not on a CUDA device"),
        }
    }
}

/// A contiguous copy of `s` viewed through `l`, on the same device.
fn clone_storage<S>(s: &S, l: &Layout) -> Result<(S, Shape)>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    if l.is_contiguous() && l.start_offset() == 0 {
        return Ok((s.try_clone(l)?, l.shape().clone()));
    }
    let mut dst = s.device().zeros_impl(l.shape(), s.dtype())?;
    s.copy_strided_src(&mut dst, 0, l)?;
    Ok((dst, l.shape().clone()))
}

type Bwd1 = dyn Fn(&Tensor, &Tensor) -> Result<Option<Tensor>> + Send + Sync;
type Bwd2 = dyn Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)>
    + Send
    + Sync;

struct Attach1 {
    name: &'static str,
    y: Stash,
    /// `(result, grad_of_result) -> grad_of_arg`.
    bwd: Box<Bwd1>,
}

impl CustomOp1 for Attach1 {
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.y.cpu()
    }
    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        self.y.cuda()
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        (self.bwd)(res, grad)
    }
}

struct Attach2 {
    name: &'static str,
    y: Stash,
    /// `(arg1, arg2, result, grad_of_result) -> (grad_of_arg1, grad_of_arg2)`.
    bwd: Box<Bwd2>,
}

impl CustomOp2 for Attach2 {
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.y.cpu()
    }
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.y.cuda()
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        (self.bwd)(a, b, res, grad)
    }
}

/// Returns `y` (computed without a graph) attached to `x`: the forward value is `y`, and
/// backward calls `bwd(y, dy) -> dx`. Without a graph on `x`, returns `y` itself.
pub fn attach1<F>(x: &Tensor, y: Tensor, name: &'static str, bwd: F) -> Result<Tensor>
where
    F: Fn(&Tensor, &Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
{
    if !x.track_op() {
        return Ok(y);
    }
    x.apply_op1(Attach1 {
        name,
        y: Stash(Mutex::new(Some(y))),
        bwd: Box::new(bwd),
    })
}

/// Two-input version of [`attach1`]: backward calls `bwd(a, b, y, dy) -> (da, db)`; `a` and
/// `b` are the original inputs (detach them before using them in gradient math).
pub fn attach2<F>(a: &Tensor, b: &Tensor, y: Tensor, name: &'static str, bwd: F) -> Result<Tensor>
where
    F: Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)>
        + Send
        + Sync
        + 'static,
{
    if !a.track_op() && !b.track_op() {
        return Ok(y);
    }
    a.apply_op2(
        b,
        Attach2 {
            name,
            y: Stash(Mutex::new(Some(y))),
            bwd: Box::new(bwd),
        },
    )
}

type Bwd3 = dyn Fn(
        &Tensor,
        &Tensor,
        &Tensor,
        &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)>
    + Send
    + Sync;

struct Attach3 {
    name: &'static str,
    y: Stash,
    /// `(arg1, arg2, arg3, grad_of_result) -> grads of the three args`.
    bwd: Box<Bwd3>,
}

impl CustomOp3 for Attach3 {
    fn name(&self) -> &'static str {
        self.name
    }
    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.y.cpu()
    }
    fn cuda_fwd(
        &self,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
        _: &CudaStorage,
        _: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.y.cuda()
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        (self.bwd)(a, b, c, grad)
    }
}

/// Three-input version of [`attach2`]: backward calls `bwd(a, b, c, dy) -> (da, db, dc)`.
pub fn attach3<F>(
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    y: Tensor,
    name: &'static str,
    bwd: F,
) -> Result<Tensor>
where
    F: Fn(
            &Tensor,
            &Tensor,
            &Tensor,
            &Tensor,
        ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)>
        + Send
        + Sync
        + 'static,
{
    if !a.track_op() && !b.track_op() && !c.track_op() {
        return Ok(y);
    }
    a.apply_op3(
        b,
        c,
        Attach3 {
            name,
            y: Stash(Mutex::new(Some(y))),
            bwd: Box::new(bwd),
        },
    )
}
