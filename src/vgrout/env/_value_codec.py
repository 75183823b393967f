"""The value codec shared by the trusted harness (in the sandbox) and the grader (in the parent).

A closed set of value types travels as JSON: exact builtins, containers of them, a few stdlib types
rebuilt exactly (Counter, OrderedDict, defaultdict, deque, Fraction, Decimal), numpy scalars as the
builtin they equal, and ListNode/TreeNode chains as their value lists. Anything else is "unsafe"
and decodes to an `UnsafeValue` that equals nothing.

The grader imports this module; it also ships its source to the sandbox, where it runs as part of
the harness program (ahead of `_harness`, in the same namespace). So, like the harness, it must
only use the standard library and must not import anything from vgrout.
"""

import builtins
import json
import sys

MAX_DEPTH = 64  # container nesting accepted in a returned value
MAX_NODES = 200_000  # elements visited while encoding one value
MAX_LINKED = 100_000  # ListNode / TreeNode nodes (also bounds cycles)
INT_JSON_LIMIT = 2**53  # larger ints travel as hex strings (no decimal-digit limit applies)

# Builtins captured before any program runs: a program that rebinds `type` or `getattr` changes
# what it can claim, never how a value is read.
_getattr = builtins.getattr
_type = builtins.type
_json_text = json.JSONEncoder(separators=(",", ":")).encode
_BOOL, _INT, _FLOAT, _STR, _COMPLEX, _BYTES = bool, int, float, str, complex, bytes
_len, _isinstance = builtins.len, builtins.isinstance
_LIST, _TUPLE, _SET, _FROZENSET, _DICT = list, tuple, set, frozenset, dict
_json_value = json.loads


class Unsafe(Exception):
    """A value outside the safe codec: never equal to anything."""


# ---------------------------------------------------------------------------------------------
# codec: a closed set of value types, as JSON. Exact type checks: subclasses are unsafe.
# ---------------------------------------------------------------------------------------------


def _numpy_scalar(value):
    """numpy scalars become the builtin they equal exactly; anything else from numpy is unsafe."""
    np = sys.modules.get("numpy")
    if np is None or _type(value).__module__ != "numpy":
        return None
    if _isinstance(value, np.bool_):
        return _BOOL(value)
    if _isinstance(value, np.integer):
        return _INT(value)
    if _isinstance(value, np.floating):
        return _FLOAT(value)
    return None


def _linked_values(node, budget):
    values = []
    while node is not None:
        if _len(values) >= MAX_LINKED:
            raise Unsafe("ListNode chain too long or cyclic")
        values.append(_enc(node.val, 1, budget))
        node = node.next
    return values


def _level_order(root, value_of, children_of, max_queue=None):
    """LeetCode level order of a binary tree: values breadth first, None for a missing child,
    trailing Nones trimmed. More than `max_queue` queued nodes raises Unsafe (too large, cyclic)."""
    out, queue, head = [], [root], 0
    while head < _len(queue):
        node = queue[head]
        head += 1
        if node is None:
            out.append(None)
            continue
        if max_queue is not None and _len(queue) > max_queue:
            raise Unsafe("TreeNode structure too large or cyclic")
        out.append(value_of(node))
        queue.extend(children_of(node))
    while out and out[-1] is None:
        out.pop()
    return out


def _tree_level_order(root, budget):
    """A TreeNode structure's level order, each value encoded."""
    return _level_order(
        root,
        lambda node: _enc(node.val, 1, budget),
        lambda node: (node.left, node.right),
        max_queue=2 * MAX_LINKED,
    )


def _enc(value, depth, budget):
    budget[0] -= 1
    if budget[0] < 0:
        raise Unsafe("value too large")
    if depth > MAX_DEPTH:
        raise Unsafe("value nested too deeply")
    t = _type(value)
    if value is None or t is _BOOL or t is _STR:
        return value
    if t is _INT:
        return (
            value
            if -INT_JSON_LIMIT < value < INT_JSON_LIMIT
            else {"I": _INT.__format__(value, "x")}
        )
    if t is _FLOAT:
        return {"F": value.hex()}
    if t is _LIST:
        return [_enc(v, depth + 1, budget) for v in value]
    if t is _TUPLE:
        return {"T": [_enc(v, depth + 1, budget) for v in value]}
    if t is _SET or t is _FROZENSET:
        key = "S" if t is _SET else "Z"
        return {key: [_enc(v, depth + 1, budget) for v in value]}
    if t is _DICT:
        return {
            "M": [
                [_enc(k, depth + 1, budget), _enc(v, depth + 1, budget)] for k, v in value.items()
            ]
        }
    if t is _COMPLEX:
        return {"X": [value.real.hex(), value.imag.hex()]}
    if t is _BYTES:
        return {"B": value.hex()}
    return _enc_stdlib(value, t, depth, budget)


def _is_class(t, module, name):
    """`t` is exactly the class `module.name` as imported in this process (no look-alikes)."""
    loaded = sys.modules.get(module)
    return loaded is not None and t is _getattr(loaded, name, None)


def _enc_stdlib(value, t, depth, budget):
    """Trusted stdlib types with exact reconstruction in the parent; numpy scalars; linked nodes."""
    for name, key in (("Counter", "C"), ("OrderedDict", "O"), ("defaultdict", "DD")):
        if _is_class(t, "collections", name):
            items = dict.items(value)
            return {
                key: [[_enc(k, depth + 1, budget), _enc(v, depth + 1, budget)] for k, v in items]
            }
    if _is_class(t, "collections", "deque"):
        return {"Q": [_enc(v, depth + 1, budget) for v in value]}
    if _is_class(t, "fractions", "Fraction"):
        return {"R": [_enc(value.numerator, depth, budget), _enc(value.denominator, depth, budget)]}
    if _is_class(t, "decimal", "Decimal"):
        return {"D": _STR(value)}
    if t is LinkedList:  # the parent's own expected values (eq_override channel payload)
        return {"LN": [_enc(v, depth + 1, budget) for v in value.values]}
    if t is Tree:
        return {"TN": [_enc(v, depth + 1, budget) for v in value.level_order]}
    scalar = _numpy_scalar(value)
    if scalar is not None:
        return _enc(scalar, depth, budget)
    name = _getattr(t, "__name__", "")
    if name == "ListNode":
        return {"LN": _linked_values(value, budget)}
    if name == "TreeNode":
        return {"TN": _tree_level_order(value, budget)}
    raise Unsafe(f"{_getattr(t, '__module__', '?')}.{name}")


def encode(value, max_chars=65536):
    """JSON text of a returned value, or of {"U": reason} when it is outside the safe codec."""
    try:
        text = _json_text(_enc(value, 0, [MAX_NODES]))
    except Unsafe as exc:
        return _json_text({"U": _STR(exc)[:200]})
    except BaseException as exc:  # noqa: BLE001 - a value whose inspection fails is unsafe
        return _json_text({"U": _type(exc).__name__})
    if _len(text) > max_chars:
        return _json_text({"U": "value too large"})
    return text


class UnsafeValue:
    """Parent-side stand-in for an unsafe value: equal to nothing, itself included."""

    __slots__ = ("reason",)

    def __init__(self, reason):
        self.reason = reason

    def __eq__(self, other):
        return False

    def __ne__(self, other):
        return True

    __hash__ = None

    def __repr__(self):
        return f"UnsafeValue({self.reason!r})"


class _NodeValues:
    """A node structure (ListNode chain, TreeNode tree) as a tuple of its values: equal only to
    the same kind of structure with the same values, like the benchmark's is_same_list/tree."""

    __slots__ = ("_items",)

    def __init__(self, items):
        self._items = tuple(items)

    def __eq__(self, other):
        return _type(other) is _type(self) and self._items == other._items

    def __hash__(self):
        return hash((_type(self).__name__, self._items))

    def __repr__(self):
        return f"{_type(self).__name__}({list(self._items)!r})"


class LinkedList(_NodeValues):
    """A ListNode chain as its values (compares like the benchmark's is_same_list)."""

    __slots__ = ()

    @property
    def values(self):
        return self._items


class Tree(_NodeValues):
    """A TreeNode structure as its LeetCode level order (compares like is_same_tree)."""

    __slots__ = ()

    @property
    def level_order(self):
        return self._items


def _pairs(items):
    return [(_dec(k), _dec(v)) for k, v in items]


def _dec(data):
    """Inverse of `_enc`, building only trusted types. Malformed input raises."""
    if data is None or _type(data) in (_BOOL, _INT, _STR):
        return data
    if _type(data) is _LIST:
        return [_dec(v) for v in data]
    if _type(data) is not _DICT or _len(data) != 1:
        raise ValueError("malformed value")
    ((tag, body),) = data.items()
    if tag == "I":
        return _INT(body, 16)
    if tag == "F":
        return _FLOAT.fromhex(body)
    if tag == "T":
        return _TUPLE(_dec(v) for v in body)
    if tag == "S":
        return {_dec(v) for v in body}
    if tag == "Z":
        return _FROZENSET(_dec(v) for v in body)
    if tag == "M":
        return _DICT(_pairs(body))
    if tag == "X":
        return _COMPLEX(_FLOAT.fromhex(body[0]), _FLOAT.fromhex(body[1]))
    if tag == "B":
        return _BYTES.fromhex(body)
    return _dec_stdlib(tag, body)


def _dec_stdlib(tag, body):
    import collections
    import decimal
    import fractions

    if tag == "C":
        return collections.Counter(dict(_pairs(body)))
    if tag == "O":
        return collections.OrderedDict(_pairs(body))
    if tag == "DD":
        return collections.defaultdict(None, _pairs(body))
    if tag == "Q":
        return collections.deque(_dec(v) for v in body)
    if tag == "R":
        return fractions.Fraction(_dec(body[0]), _dec(body[1]))
    if tag == "D":
        return decimal.Decimal(body)
    if tag == "LN":
        return LinkedList(_dec(v) for v in body)
    if tag == "TN":
        return Tree(_dec(v) for v in body)
    if tag == "U":
        return UnsafeValue(str(body))
    raise ValueError(f"unknown value tag {tag!r}")


def decode(text):
    """Value from `encode` text; UnsafeValue for unsafe or malformed input (never raises)."""
    try:
        return _dec(_json_value(text))
    except Exception as exc:  # noqa: BLE001 - any malformed claim is simply unsafe
        return UnsafeValue(f"malformed: {type(exc).__name__}")


def tree_from_level_order(values):
    """The benchmark's tree_node(values) as a Tree (None when empty). Pure: no TreeNode needed."""
    if not values:
        return None
    nodes = [[values[0], None, None]]
    queue, head, i = [0], 0, 1
    while head < _len(queue):
        node = nodes[queue[head]]
        head += 1
        for side in (1, 2):
            if i < _len(values) and values[i] is not None:
                nodes.append([values[i], None, None])
                node[side] = _len(nodes) - 1
                queue.append(node[side])
            i += 1
    # nodes are [value, left index, right index]; the root is index 0
    return Tree(_level_order(0, lambda idx: nodes[idx][0], lambda idx: nodes[idx][1:]))


def linked_from_values(values):
    """The benchmark's list_node(values) as a LinkedList (None when empty)."""
    return LinkedList(values) if values else None
