SELECT set_config('application_name', %(name)s, false)
