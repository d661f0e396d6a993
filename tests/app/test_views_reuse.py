"""Family views reuse their plot items across snapshots (only new data goes in) and rebuild
them when a view's kind or make-up changes."""
import numpy as np

from engines.messages import Snapshot


def _snap(views):
    return Snapshot(step=1, wall_time=0, loss_steps=np.zeros(0), losses={}, lr=1e-3, steps_per_s=0, views=views)


def _curves(scale, names=("p(x1)", "p(x2|x1)")):
    x = np.linspace(0, 1, 9)
    return dict(kind="curves", title="conditionals", curves={n: (x, scale * (i + 1) * x) for i, n in enumerate(names)})


def _scatter(shift):
    return dict(kind="scatter", space="data", x=np.random.default_rng(0).normal(shift, 1, (200, 2)),
                color=np.arange(200.0), color_label="component")


def test_views_reuse_items_and_refill_their_data(themed_app, run_info):
    from app.panels.views import ViewsPanel
    panel = ViewsPanel()
    panel.reset(run_info())
    panel.on_snapshot(_snap(dict(cond=_curves(1.0), pts=_scatter(0.0))))
    assert panel.draw()
    cond, pts = panel.plots["cond"], panel.plots["pts"]
    curve_items = dict(cond._view_state[1]["curves"])
    scatter_item = pts._view_state[1]["points"]
    panel.on_snapshot(_snap(dict(cond=_curves(3.0), pts=_scatter(5.0))))
    assert panel.draw()
    assert panel.plots["cond"] is cond and cond._view_state[1]["curves"] == curve_items   # the same items...
    assert pts._view_state[1]["points"] is scatter_item
    np.testing.assert_allclose(curve_items["p(x2|x1)"].yData, 6.0 * np.linspace(0, 1, 9))   # ...with the new data
    np.testing.assert_allclose(scatter_item.data["x"].mean(), 5.0, atol=0.3)
    assert len(cond.legend.items) == 2 and pts._colour_bar.isVisible()
    # another set of curves: the plot's items are rebuilt, the legend names the new ones only
    panel.on_snapshot(_snap(dict(cond=_curves(1.0, names=("a", "b", "c")), pts=_scatter(0.0))))
    assert panel.draw()
    assert set(cond._view_state[1]["curves"]) == {"a", "b", "c"}
    assert [it[1].text for it in cond.legend.items] == ["a", "b", "c"]
    assert len(cond.listDataItems()) == 3                  # the old curves are gone from the plot


def test_a_bad_view_is_rebuilt_once_it_is_good_again(themed_app, run_info):
    from app.panels.views import ViewsPanel
    panel = ViewsPanel()
    panel.reset(run_info())
    panel.on_snapshot(_snap(dict(cond=dict(kind="curves", curves={"c": ([0, 1], [1])}))))   # x, y differ in length
    panel.draw()
    assert "cond" in panel.note.text() and panel.plots["cond"]._view_state is None
    panel.on_snapshot(_snap(dict(cond=_curves(1.0))))
    panel.draw()
    assert panel.note.text() == "" and len(panel.plots["cond"]._view_state[1]["curves"]) == 2
