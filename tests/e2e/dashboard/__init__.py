"""The dashboard end-to-end: a real headless browser against a real admin runner and inference service.

conftest.py starts the stack (one per test module), stack.py holds its constants and the admin runner command,
browser.py the Selenium helpers; test_dashboard_scenario.py is the main scenario, test_dashboard_admin_configs.py
the pages under admin runners configured otherwise.
"""
