//! The least-squares refinement of locate §3.3 step 3: SciPy `leastsq`
//! (MINPACK `lmdif`) with its defaults, built on the `levenberg-marquardt`
//! crate (a port of MINPACK `lmder`).
//!
//! `lmdif` is `lmder` with the Jacobian computed by forward differences
//! (`fdjac2`). This module supplies exactly that Jacobian — step
//! `h = sqrt(eps)·|xⱼ|` (`sqrt(eps)` when `xⱼ = 0`), column
//! `(f(x + h·eⱼ) − f(x)) / h` — and configures the crate like SciPy:
//! `ftol = xtol = 1.49012e-8`, `gtol = 0`, step bound `factor = 100`,
//! automatic scaling. `lmdif` counts the `n` evaluations of every Jacobian
//! against `maxfev = 200·(n + 1) = 600`, `lmder` does not; the problem counts
//! them itself and refuses further evaluations once 600 are used, which ends
//! the run as a failure just where `lmdif` reports `info = 5`.

use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::storage::Owned;
use nalgebra::{Dyn, OMatrix, OVector, U2, Vector2};

use crate::geo::GeoPoint;

/// SciPy's default `ftol` / `xtol`.
const TOL: f64 = 1.49012e-8;
/// SciPy's default `maxfev` for two parameters: 200·(n + 1).
const MAX_FEV: usize = 600;
/// SciPy's default initial step bound factor.
const FACTOR: f64 = 100.0;

/// One residual term: a network position and its residual weight
/// `age_factor / signal²`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Term {
    pub at: GeoPoint,
    pub age_factor: f64,
    pub signal: f64,
}

/// Residuals and the point they were evaluated at.
type Evaluated = (Vector2<f64>, OVector<f64, Dyn>);

struct Problem<'a> {
    terms: &'a [Term],
    x: Vector2<f64>,
    /// Function evaluations as `lmdif` counts them.
    nfev: std::cell::Cell<usize>,
    /// Set once a trial evaluation used up `maxfev` without convergence.
    exhausted: std::cell::Cell<bool>,
    /// The residuals last evaluated and where: the Jacobian at the same point
    /// starts from them instead of evaluating them again (same values as `fdjac2`).
    last: std::cell::RefCell<Option<Evaluated>>,
}

impl Problem<'_> {
    fn eval_at(&self, x: &Vector2<f64>) -> OVector<f64, Dyn> {
        let point = GeoPoint::new(x[0], x[1]);
        OVector::<f64, Dyn>::from_iterator(
            self.terms.len(),
            self.terms.iter().map(|t| {
                // Same operation order as the original:
                // distance(net, point) * age_factor / signal**2.
                t.at.distance(&point) * t.age_factor / (t.signal * t.signal)
            }),
        )
    }

    /// Counts `k` evaluations; false once the budget is exhausted. `lmdif`
    /// tests `nfev >= maxfev` only after a trial step (after its convergence
    /// tests), so only a trial evaluation can exhaust the budget.
    fn spend(&self, k: usize, trial: bool) -> bool {
        if self.exhausted.get() {
            return false;
        }
        let used = self.nfev.get() + k;
        self.nfev.set(used);
        if trial && used >= MAX_FEV {
            self.exhausted.set(true);
        }
        true
    }
}

impl LeastSquaresProblem<f64, Dyn, U2> for Problem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, U2>;
    type ParameterStorage = Owned<f64, U2>;

    fn set_params(&mut self, x: &Vector2<f64>) {
        self.x = *x;
    }

    fn params(&self) -> Vector2<f64> {
        self.x
    }

    fn residuals(&self) -> Option<OVector<f64, Dyn>> {
        if !self.spend(1, true) {
            return None;
        }
        let f = self.eval_at(&self.x);
        *self.last.borrow_mut() = Some((self.x, f.clone()));
        Some(f)
    }

    fn jacobian(&self) -> Option<OMatrix<f64, Dyn, U2>> {
        if !self.spend(2, false) {
            return None;
        }
        let eps = f64::EPSILON.sqrt();
        let cached = self
            .last
            .borrow()
            .as_ref()
            .filter(|(at, _)| *at == self.x)
            .map(|(_, f)| f.clone());
        let f0 = cached.unwrap_or_else(|| self.eval_at(&self.x));
        let mut jac = OMatrix::<f64, Dyn, U2>::zeros(self.terms.len());
        for j in 0..2 {
            let mut h = eps * self.x[j].abs();
            if h == 0.0 {
                h = eps;
            }
            let mut xh = self.x;
            xh[j] += h;
            let f1 = self.eval_at(&xh);
            for i in 0..self.terms.len() {
                jac[(i, j)] = (f1[i] - f0[i]) / h;
            }
        }
        Some(jac)
    }
}

/// Minimises Σ residualᵢ² from `initial`; `None` when the solver reports
/// anything but convergence (SciPy `ier` not in 1–4).
pub(crate) fn refine(terms: &[Term], initial: (f64, f64)) -> Option<(f64, f64)> {
    if terms.len() < 2 {
        // leastsq needs at least as many residuals as parameters.
        return None;
    }
    let problem = Problem {
        terms,
        x: Vector2::new(initial.0, initial.1),
        nfev: std::cell::Cell::new(0),
        exhausted: std::cell::Cell::new(false),
        last: std::cell::RefCell::new(None),
    };
    let solver = LevenbergMarquardt::new()
        .with_ftol(TOL)
        .with_xtol(TOL)
        .with_gtol(0.0)
        .with_stepbound(FACTOR)
        .with_scale_diag(true)
        // Our own counter enforces maxfev; keep the crate's limit out of reach.
        .with_patience(10 * MAX_FEV);
    let (solved, report) = solver.minimize(problem);
    if report.termination.was_successful() {
        let x = solved.params();
        Some((x[0], x[1]))
    } else {
        None
    }
}
