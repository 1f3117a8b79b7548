"""interp.nethook: read / edit layer outputs by name; hooks never leak."""
import pytest
import torch
from torch import nn

from interp.nethook import LayerNotFoundError, StopForward, Trace, TraceDict, get_module, layer_names


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(c, c, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv1(self.act(self.conv0(x)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.synthesis = nn.Sequential()
        self.synthesis.add_module("b4", Block(4))
        self.synthesis.add_module("b8", Block(4))
        self.head = nn.Conv2d(4, 3, 1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.head(self.synthesis(x))


def hook_count(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in net.modules())


@pytest.fixture()
def net():
    torch.manual_seed(0)
    return Net().eval()


@pytest.fixture()
def x():
    return torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def test_identity_edit_changes_nothing(net, x):
    ref = net(x)
    seen = []

    def identity(output, layer):
        seen.append(layer)
        return output

    with TraceDict(net, ["synthesis.b4.conv0", "synthesis.b8.conv1"], edit_output=identity) as td:
        out = net(x)
    assert torch.equal(out, ref)
    assert seen == ["synthesis.b4.conv0", "synthesis.b8.conv1"]
    assert td["synthesis.b8.conv1"].output.shape == (2, 4, 8, 8)
    assert hook_count(net) == 0


def test_retained_output_matches_manual_forward(net, x):
    with Trace(net, "synthesis.b4") as t:
        net(x)
    assert torch.allclose(t.output, net.synthesis.b4(x))


def test_edit_applies_and_propagates(net, x):
    ref = net(x)

    def zero_channel(output, layer):
        output = output.clone()
        output[:, 1] = 0
        return output

    with Trace(net, "synthesis.b8.conv1", edit_output=zero_channel) as t:
        out = net(x)
    assert torch.all(t.output[:, 1] == 0)
    assert not torch.allclose(out, ref)
    # the edited output is exactly what the next layer consumed
    assert torch.allclose(out, net.head(t.output), atol=1e-6)
    # single-argument edit functions are accepted too
    with Trace(net, "synthesis.b8.conv1", edit_output=lambda o: o * 0):
        out0 = net(x)
    assert torch.allclose(out0, net.head(torch.zeros_like(t.output)), atol=1e-6)
    assert hook_count(net) == 0


def test_hooks_removed_after_exception(net, x):
    def boom(output, layer):
        raise RuntimeError("edit failed")

    with pytest.raises(RuntimeError, match="edit failed"):
        with TraceDict(net, ["synthesis.b4.conv0", "synthesis.b8.conv0"], edit_output=boom):
            net(x)
    assert hook_count(net) == 0
    with pytest.raises(ValueError):
        with Trace(net, "synthesis.b4.conv0"):
            raise ValueError("user code failed")
    assert hook_count(net) == 0
    assert torch.equal(net(x), net(x))


def test_stop_ends_forward_early(net, x):
    with Trace(net, "synthesis.b4", stop=True) as t:
        result = net(x)
        reached = True  # not reached: the StopForward leaves the block
    assert "result" not in locals() and "reached" not in locals()
    assert t.output.shape == (2, 4, 8, 8)
    assert hook_count(net) == 0

    # TraceDict stops after the last listed layer; earlier layers are still recorded
    with TraceDict(net, ["synthesis.b4.conv0", "synthesis.b8.conv0"], stop=True) as td:
        net(x)
    assert td["synthesis.b4.conv0"].output is not None
    assert td["synthesis.b8.conv0"].output is not None
    with Trace(net, "head") as head:
        with TraceDict(net, ["synthesis.b4.conv0"], stop=True):
            net(x)
    assert head.output is None  # the head never ran


def test_nested_stop_is_caught_by_its_own_trace(net, x):
    after_inner = []
    with Trace(net, "synthesis.b4", stop=True) as outer:
        with Trace(net, "synthesis.b8"):
            net(x)
            after_inner.append(True)
    assert after_inner == []  # the inner trace did not swallow the outer one's stop
    assert outer.output is not None
    assert hook_count(net) == 0


def test_stop_forward_propagates_outside_context(net, x):
    t = Trace(net, "synthesis.b4", stop=True)
    with pytest.raises(StopForward):
        net(x)
    t.close()
    assert hook_count(net) == 0


def test_hooks_act_only_in_their_own_thread(net, x):
    """The app shares one generator between visitors' threads: a trace must not touch another thread's pass."""
    import threading

    expected = net(x)
    seen = {}

    def other_visitor():
        seen["out"] = net(x)                               # neither stopped, edited nor recorded

    with Trace(net, "synthesis.b4", stop=True, edit_output=lambda o: o * 0) as t:
        thread = threading.Thread(target=other_visitor)
        thread.start()
        thread.join()
        assert t.output is None
        net(x)
    assert torch.equal(seen["out"], expected)
    assert t.output is not None and not t.output.any()     # its own thread's pass: edited and stopped
    assert hook_count(net) == 0


def test_unknown_layer_names_close_matches(net):
    with pytest.raises(LayerNotFoundError, match=r"synthesis\.b8\.conv0"):
        get_module(net, "synthesis.b8.conv")
    with pytest.raises(LayerNotFoundError, match="Did you mean"):
        Trace(net, "synthesis.b4.cnv1")
    with pytest.raises(LayerNotFoundError):
        TraceDict(net, ["synthesis.b4.conv0", "nope"])
    assert hook_count(net) == 0  # nothing installed when one name is bad
    assert "synthesis.b8.conv1" in layer_names(net)


def test_retain_input_clone_detach(net, x):
    x = x.clone().requires_grad_(True)
    with Trace(net, "synthesis.b8.conv0", retain_input=True, clone=True, detach=True) as t:
        net(x)
    assert not t.output.requires_grad and not t.input.requires_grad
    assert t.input.shape == (2, 4, 8, 8)
    with Trace(net, "synthesis.b8.conv0") as t2:
        net(x).sum().backward()
    assert t2.output.requires_grad  # not detached by default: gradients can flow to edits
