"""The attacker's tests (issue 15): each path to more access than policy allows, tried as it
would be, through the pages and the REST API."""
