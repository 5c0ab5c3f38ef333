from pydantic import BaseModel


class Input(BaseModel):
    zip_code: str | None = None


class Output(BaseModel):
    score: float
