"""The conformance suite of roomcast's two clients: one list of scenarios
(scenarios.py) played by roomcast.client (python_driver.py) and by roomcast.js in
Chromium (js_driver.py), each recording the same observations, checked by the same
expectations (test_conformance.py)."""
