// After a failed submit, put the keyboard and the screen reader where the
// problem is: on the first field in error, else on the error summary.
export function focusFirstError() {
  const field = document.querySelector("[aria-invalid='true']");
  const summary = document.querySelector(".error-summary");
  (field || summary)?.focus();
}
