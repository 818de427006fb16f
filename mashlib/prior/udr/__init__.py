"""Ultimate deconvolution (port of udr): ``ud_init`` builds the initial fit, ``ud_fit`` runs the EM.

``model`` (the fit and component classes, ``ud_init``), ``fit`` (the EM loop), ``updates``
(the ED / TED / FA / scaled / rank-one / residual covariance updates).
"""
from .fit import ud_fit
from .model import UdComponent, UdFit, ud_fit_control_default, ud_init

__all__ = ["UdComponent", "UdFit", "ud_init", "ud_fit", "ud_fit_control_default"]
