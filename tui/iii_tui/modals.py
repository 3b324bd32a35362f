"""Modal screens: confirmation, help, the schema-driven invoke form and its result."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static, TextArea

from .filtering import __doc__ as FILTER_DOC
from .schema_form import (
    MISSING,
    FieldSpec,
    build_value,
    fields_from_schema,
    flatten,
    initial_raw,
    raw_from_value,
)
from .store import clean_text
from .text import join_lines, styled

__all__ = ["ConfirmScreen", "HelpScreen", "InvokeOutcome", "InvokeScreen", "ResultScreen"]


class ConfirmScreen(ModalScreen[bool]):
    """Ask before a destructive action. Cancel is focused (the safe default); ``y`` confirms."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="modal-box"):
            yield Label(styled(clean_text(self.question, 2000)), id="confirm-question")
            yield Label("y = yes, n / Esc = no", classes="muted")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="confirm-no", variant="primary")
                yield Button("Confirm", id="confirm-yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        """Close with ``answer``."""
        self.dismiss(answer)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")


class HelpScreen(ModalScreen[None]):
    """Key bindings of the screen it was opened from, the app's, and the filter grammar."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        lines: list[Content | str] = []
        for title, keys in self.sections:
            lines.append(styled((title, "bold")))
            lines += [f"  {key:<14} {text}" for key, text in keys]
            lines.append("")
        grammar = (FILTER_DOC or "").split("Grammar", 1)[-1]
        lines.append(styled(("Filter grammar", "bold"), " (/ on every list)" + grammar))
        with VerticalScroll(id="help-box", classes="modal-box"):
            yield Static(join_lines(lines), id="help-text", markup=False)

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)


class InvokeOutcome:
    """What an invoke produced: the result or the error, its duration and trace."""

    def __init__(
        self,
        function_id: str,
        payload: Any,
        *,
        ok: bool,
        result: Any = None,
        error: str = "",
        duration_ms: float = 0.0,
        trace_id: str | None = None,
    ) -> None:
        self.function_id = function_id
        self.payload = payload
        self.ok = ok
        self.result = result
        self.error = error
        self.duration_ms = duration_ms
        self.trace_id = trace_id

    def as_dict(self) -> dict[str, Any]:
        """The record kept in the store (and the session file)."""
        return {
            "function_id": self.function_id,
            "ok": self.ok,
            "result": self.result,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 3),
            "trace_id": self.trace_id,
        }


def _kind_hint(spec: FieldSpec) -> str:
    hint = spec.kind if spec.kind != "json" else "JSON"
    if spec.nullable:
        hint += "|null"
    return hint


class InvokeScreen(ModalScreen[Any]):
    """A form generated from a request schema; dismisses with the payload (or ``MISSING``).

    Typed fields (text, integer, number, boolean, enum, nested objects, JSON for the rest),
    required marks, defaults, validation messages under each field, and a raw-JSON editor
    (``ctrl+j``) that converts both ways.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Invoke"),
        Binding("ctrl+j,f2", "toggle_raw", "Raw JSON"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, function_id: str, schema: Any, initial: Any = MISSING) -> None:
        super().__init__()
        self.function_id = function_id
        self.schema = schema
        self.specs = fields_from_schema(schema)
        self.flat = flatten(self.specs)
        self.raw_mode = False
        self.errors: dict[str, str] = {}
        self._initial = initial

    def compose(self) -> ComposeResult:
        with Vertical(id="invoke-box", classes="modal-box"):
            yield Label(styled("Invoke ", (clean_text(self.function_id), "bold")), id="invoke-title")
            yield Label("ctrl+s invoke · ctrl+j raw JSON · Esc cancel · * required", classes="muted")
            with VerticalScroll(id="invoke-form"):
                raw = initial_raw(self.specs)
                for index, spec in enumerate(self.flat):
                    depth = max(0, len(spec.path) - 1)
                    mark = " *" if spec.required else ""
                    name = f"{'  ' * depth}{clean_text(spec.name, 200)}{mark}  "
                    if spec.kind == "object":
                        yield Label(styled(name, (_kind_hint(spec), "dim"), ":"), classes="field-group")
                        continue
                    yield Label(styled(name, (_kind_hint(spec), "dim")), classes="field-label")
                    yield self._widget(index, spec, raw.get(spec.key))
                    if spec.description:
                        about = f"{'  ' * depth}{clean_text(spec.description, 200)}"
                        yield Label(styled(about), classes="muted")
                    yield Label("", id=f"err-{index}", classes="field-error", markup=False)
            yield TextArea("", id="invoke-raw", language=None)
            yield Label("", id="invoke-summary", classes="field-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Invoke", id="invoke-go", variant="primary")
                yield Button("Raw JSON", id="invoke-raw-toggle")
                yield Button("Cancel", id="invoke-cancel")

    def _widget(self, index: int, spec: FieldSpec, value: Any) -> Any:
        wid = f"fld-{index}"
        if spec.kind == "boolean":
            return Checkbox(Content(clean_text(spec.name, 200)), bool(value), id=wid)
        if spec.kind == "enum":
            options = [(Content(clean_text(json.dumps(v), 200)), i) for i, v in enumerate(spec.enum)]
            select: Select[int] = Select(options, id=wid, allow_blank=True, prompt="choose…")
            if value is not MISSING and value in spec.enum:
                select.value = spec.enum.index(value)
            return select
        placeholder = {"integer": "integer", "number": "number", "json": "JSON"}.get(spec.kind, "")
        return Input(value="" if value is None else str(value), id=wid, placeholder=placeholder)

    def on_mount(self) -> None:
        self.query_one("#invoke-raw", TextArea).display = False
        if self._initial is not MISSING:
            self._load_raw(raw_from_value(self.specs, self._initial))
        first = self.query("#invoke-form Input, #invoke-form Checkbox, #invoke-form Select")
        if first:
            first.first().focus()

    # -- values --------------------------------------------------------------------------------
    def form_values(self) -> dict[str, Any]:
        """The raw values of the form widgets, by field key."""
        raw: dict[str, Any] = {}
        for index, spec in enumerate(self.flat):
            if spec.kind == "object":
                continue
            widget = self.query_one(f"#fld-{index}")
            if isinstance(widget, Checkbox):
                raw[spec.key] = widget.value
            elif isinstance(widget, Select):
                value = widget.value
                raw[spec.key] = spec.enum[value] if isinstance(value, int) else MISSING
            elif isinstance(widget, Input):
                raw[spec.key] = widget.value
        return raw

    def _load_raw(self, raw: dict[str, Any]) -> None:
        for index, spec in enumerate(self.flat):
            if spec.kind == "object" or spec.key not in raw:
                continue
            widget = self.query_one(f"#fld-{index}")
            value = raw[spec.key]
            if isinstance(widget, Checkbox):
                widget.value = bool(value)
            elif isinstance(widget, Select):
                if value is MISSING or value not in spec.enum:
                    widget.clear()
                else:
                    widget.value = spec.enum.index(value)
            elif isinstance(widget, Input):
                widget.value = "" if value is MISSING or value is None else str(value)

    def _show_errors(self, errors: dict[str, str]) -> None:
        self.errors = errors
        for index, spec in enumerate(self.flat):
            if spec.kind == "object":
                continue
            label = self.query_one(f"#err-{index}", Label)
            message = errors.get(spec.key or "(payload)", "")
            label.update(styled(f"  ↳ {clean_text(message, 400)}") if message else "")
        summary = self.query_one("#invoke-summary", Label)
        if errors:
            names = clean_text(", ".join(sorted(errors)), 400)
            summary.update(styled(f"{len(errors)} field(s) need attention: {names}"))
        else:
            summary.update("")

    def payload(self) -> tuple[Any, dict[str, str]]:
        """The payload to send and the validation errors (empty when valid)."""
        if self.raw_mode:
            text = self.query_one("#invoke-raw", TextArea).text
            try:
                return (json.loads(text) if text.strip() else None), {}
            except ValueError as exc:
                return MISSING, {"(payload)": f"invalid JSON: {exc}"}
        return build_value(self.specs, self.form_values())

    # -- actions -------------------------------------------------------------------------------
    def action_submit(self) -> None:
        """Validate and close with the payload."""
        value, errors = self.payload()
        if errors:
            if self.raw_mode:
                message = clean_text(errors.get("(payload)", "invalid"), 400)
                self.query_one("#invoke-summary", Label).update(styled(message))
                self.errors = errors
            else:
                self._show_errors(errors)
            return
        self.dismiss(value)

    def action_toggle_raw(self) -> None:
        """Switch between the form and the raw JSON editor (values carried over)."""
        area = self.query_one("#invoke-raw", TextArea)
        form = self.query_one("#invoke-form", VerticalScroll)
        if not self.raw_mode:
            value, _ = build_value(self.specs, self.form_values())
            area.text = json.dumps(value, indent=2)
            self.raw_mode = True
            form.display = False
            area.display = True
            area.focus()
        else:
            try:
                value = json.loads(area.text) if area.text.strip() else {}
            except ValueError as exc:
                problem = clean_text(f"invalid JSON: {exc}", 400)
                self.query_one("#invoke-summary", Label).update(styled(problem))
                return
            self._load_raw(raw_from_value(self.specs, value))
            self.raw_mode = False
            area.display = False
            form.display = True
            self.query_one("#invoke-summary", Label).update("")

    def action_cancel(self) -> None:
        """Close without invoking."""
        self.dismiss(MISSING)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "invoke-go":
            self.action_submit()
        elif event.button.id == "invoke-raw-toggle":
            self.action_toggle_raw()
        else:
            self.action_cancel()


class ResultScreen(ModalScreen[str | None]):
    """An invoke's outcome: result or error, duration, trace id (``t`` opens the trace)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,q", "close", "Close"),
        Binding("t", "trace", "Open trace"),
        Binding("r", "again", "Invoke again"),
    ]

    def __init__(self, outcome: InvokeOutcome, looking: bool = False) -> None:
        super().__init__()
        self.outcome = outcome
        self.looking = looking

    def compose(self) -> ComposeResult:
        o = self.outcome
        status = ("ok", "bold green") if o.ok else ("error", "bold red")
        body = json.dumps(o.result, indent=2, default=str) if o.ok else o.error
        body = clean_text(body, 20000).replace(" ⏎ ", "\n")
        with Vertical(id="result-box", classes="modal-box"):
            title = styled(f"{clean_text(o.function_id)}: ", status, f" in {o.duration_ms:.1f} ms")
            yield Label(title, id="result-title")
            yield Label(self._trace_text(), id="result-trace")
            with VerticalScroll():
                yield Static(styled(body), id="result-body", markup=False)
            yield Label("t trace · r invoke again · Esc close", classes="muted")

    def _trace_text(self) -> Content:
        if self.outcome.trace_id:
            return styled(f"trace: {clean_text(self.outcome.trace_id)}")
        return styled("trace: looking…" if self.looking else "trace: not found")

    def show_trace(self, trace_id: str | None) -> None:
        """The trace lookup finished (spans reach the engine shortly after the call returns)."""
        self.looking = False
        if trace_id:
            self.outcome.trace_id = trace_id
        if self.is_mounted:
            self.query_one("#result-trace", Label).update(self._trace_text())

    def action_close(self) -> None:
        """Close."""
        self.dismiss(None)

    def action_trace(self) -> None:
        """Close and open the trace."""
        self.dismiss("trace" if self.outcome.trace_id else None)

    def action_again(self) -> None:
        """Close and open the form again with the same payload."""
        self.dismiss("again")
