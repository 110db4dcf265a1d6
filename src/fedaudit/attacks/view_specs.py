"""The attackers' views every attack chooses from (:class:`fedaudit.catalog.ViewSpec`; a plugin
may register its own). The classes that hand each view over live in :mod:`fedaudit.attacks.views`
(torch); this module is read while the config is validated, so it names them only."""

from fedaudit.catalog import ViewSpec

VIEWS = (
    ViewSpec(name="server_log", title="Honest-but-curious server",
             holds=("every logged round's global model and what each client sent back (under "
                    "SecAgg+ only the masked vectors)"),
             opens="fedaudit.attacks.views:ServerView"),
    ViewSpec(name="malicious_server", title="Malicious server",
             holds=("the server's log, and control over the model and the training settings it "
                    "sends to the clients")),
    ViewSpec(name="client", title="Malicious client",
             holds=("its own data, the global model of every round it took part in, the final "
                    "model and its own updates"),
             opens="fedaudit.attacks.views:ClientView"),
    ViewSpec(name="trained_model", title="User of the deployed model",
             holds="the final global model, queried at test time",
             opens="fedaudit.attacks.views:ModelView"),
)
